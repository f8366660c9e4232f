// The wait-set examples (examples/wait_set) as a user runs them: one process, two topics, messages
// from `shmbus pub` arriving through epoll and through Boost.Asio.
#include "bus_fixture.h"

namespace shmbus::test {
namespace {

class EventLoops : public BusTest {
protected:
    // Runs `example` on topics a and b until it printed 4 messages, published meanwhile.
    void prints_every_message(const std::string& example) {
        // stdin stays open (a pipe nobody writes) so that the epoll example does not stop at its EOF.
        int in[2];
        ASSERT_EQ(pipe(in), 0);
        const pid_t pid = fork();
        if (pid == 0) {
            dup2(in[0], 0);
            close(in[1]);
            const int out = open(path("out").c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
            dup2(out, 1);
            execl(example.c_str(), example.c_str(), "--dir", dir.c_str(), "--count", "4", "a", "b", nullptr);
            _exit(127);
        }
        close(in[0]);
        ASSERT_TRUE(eventually([&] { return read_file(path("out")).find("ready") != std::string::npos; }));
        EXPECT_EQ(cli({"pub", "b", "one"}).code, 0);
        EXPECT_EQ(cli({"pub", "a", "two", "three"}).code, 0);
        EXPECT_EQ(cli({"pub", "b", "four"}).code, 0);
        EXPECT_EQ(wait_exit(pid, std::chrono::seconds(20)), 0);
        close(in[1]);
        EXPECT_EQ(read_file(path("out")), "ready\nb 0 one\na 0 two\na 1 three\nb 1 four\n");
    }
};

TEST_F(EventLoops, TheEpollExamplePrintsEveryMessageOfItsTopics) { prints_every_message(SHMBUS_WAIT_EPOLL_PATH); }

#ifdef SHMBUS_WAIT_ASIO_PATH
TEST_F(EventLoops, TheAsioExamplePrintsEveryMessageOfItsTopics) { prints_every_message(SHMBUS_WAIT_ASIO_PATH); }
#endif

}  // namespace
}  // namespace shmbus::test
