// The C API's own test program (tests/c/c_api_test.c, written in C) against a live shmbusd.
#include "bus_fixture.h"

namespace shmbus::test {
namespace {

class CApi : public BusTest {};

TEST_F(CApi, EveryCallBehavesAsItsHeaderSays) {
    const pid_t pid = spawn({SHMBUS_C_API_TEST_PATH, dir}, SpawnOptions(path("c.out"), path("c.err")));
    EXPECT_EQ(wait_exit(pid, std::chrono::seconds(60)), 0) << read_file(path("c.err")) << read_file(path("c.out"));
    EXPECT_NE(read_file(path("c.out")).find("all C API checks passed"), std::string::npos);
}

}  // namespace
}  // namespace shmbus::test
