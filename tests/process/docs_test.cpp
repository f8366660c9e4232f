// What the README shows a new user: its code sample is the quickstart example, which compiles
// warning-free (-Werror) and, run against a live bus, prints the message it published.
#include "bus_fixture.h"

namespace shmbus::test {
namespace {

using Docs = BusTest;

std::string readme_code_sample() {
    const std::string readme = read_file(std::string(SHMBUS_SOURCE_DIR) + "/README.md");
    const auto start = readme.find("```cpp\n");
    if (start == std::string::npos) return {};
    const auto end = readme.find("```", start + 7);
    return readme.substr(start + 7, end - start - 7);
}

TEST_F(Docs, TheReadmeCodeSampleIsTheQuickstartExample) {
    const std::string example = read_file(std::string(SHMBUS_SOURCE_DIR) + "/examples/quickstart/quickstart.cpp");
    ASSERT_FALSE(example.empty());
    EXPECT_EQ(readme_code_sample(), example);
}

TEST_F(Docs, TheQuickstartPrintsWhatItPublishesOnEveryRun) {
    for (int run = 0; run < 2; ++run) {
        const std::string out = path("quickstart" + std::to_string(run) + ".out");
        const pid_t pid = spawn({SHMBUS_QUICKSTART_PATH}, {out, path("quickstart.err"), "", std::nullopt, {"SHMBUS_DIR=" + dir}});
        ASSERT_EQ(wait_exit(pid), 0) << read_file(path("quickstart.err"));
        EXPECT_EQ(read_file(out), std::to_string(run) + ": EURUSD 1.0841\n");  // the durable cursor resumes after its ack
    }
}

}  // namespace
}  // namespace shmbus::test
