// Stale-state collection (daemon/gc.cpp) on hand-made segments in /dev/shm.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <string>

#include "core/gc.h"
#include "core/segment.h"

namespace shmbus::detail {
namespace {

// A segment name of a bus id no test bus will ever draw.
std::string shm_name(const char* id, const char* topic) { return std::string("/shmbus-") + id + "-" + topic; }

bool exists(const std::string& shm) {
    const int fd = shm_open(shm.c_str(), O_RDONLY, 0);
    if (fd >= 0) close(fd);
    return fd >= 0;
}

bool removed(const std::vector<RemovedItem>& r, const std::string& shm, const std::string& why_part) {
    for (const auto& x : r)
        if (x.what == "segment /dev/shm" + shm && x.why.find(why_part) != std::string::npos) return true;
    return false;
}

TEST(Gc, AForeignSegmentWithABadHeaderGoesOnlyOnceItIsOldEnough) {
    const std::string shm = shm_name("00000000000bad01", "junk");
    const int fd = shm_open(shm.c_str(), O_RDWR | O_CREAT | O_TRUNC, 0600);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(write(fd, "not a segment", 13), 13);
    close(fd);
    EXPECT_FALSE(removed(collect_stale(1, 60), shm, ""));  // young: a bus may be creating it
    EXPECT_TRUE(exists(shm));
    EXPECT_TRUE(removed(collect_stale(1, 0), shm, "not a valid shmbus segment"));
    EXPECT_FALSE(exists(shm));
}

TEST(Gc, ASegmentOfABusWhoseDirectoryIsGoneIsRemovedAndOneWhoseBusMayReturnIsKept) {
    char tmpl[] = "/tmp/shmbus-gc-test-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    const std::string dir = tmpl;
    const uint64_t id = 0xbad02;
    {
        FILE* f = std::fopen((dir + "/bus.id").c_str(), "w");
        std::fprintf(f, "%016llx\n", (unsigned long long)id);
        std::fclose(f);
    }
    const std::string shm = shm_name("00000000000bad02", "t");
    const int fd = shm_open(shm.c_str(), O_RDWR | O_CREAT | O_TRUNC, 0600);
    ASSERT_GE(fd, 0);
    TopicConfig c;
    c.capacity = 4096;
    ASSERT_TRUE(detail::Segment::format(fd, "t", with_defaults(c), id, dir).has_value());
    close(fd);
    EXPECT_FALSE(removed(collect_stale(1, 0), shm, ""));  // its directory holds its bus: kept
    EXPECT_TRUE(exists(shm));
    {
        FILE* f = std::fopen((dir + "/bus.id").c_str(), "w");
        std::fprintf(f, "%016llx\n", 0x1234ull);
        std::fclose(f);
    }
    EXPECT_TRUE(removed(collect_stale(1, 0), shm, "now holds another bus"));
    EXPECT_FALSE(exists(shm));
    std::filesystem::remove_all(dir);
}

TEST(Gc, SegmentsOfTheCollectingBusAndOtherNamesAreLeftAlone) {
    const std::string own = shm_name("00000000000bad03", "mine");
    const std::string other = "/not-shmbus-00000000000bad03-x";
    for (const auto& n : {own, other}) {
        const int fd = shm_open(n.c_str(), O_RDWR | O_CREAT | O_TRUNC, 0600);
        ASSERT_GE(fd, 0);
        close(fd);
    }
    const auto r = collect_stale(0xbad03, 0);
    EXPECT_FALSE(removed(r, own, ""));
    EXPECT_TRUE(exists(own));
    EXPECT_TRUE(exists(other));
    shm_unlink(own.c_str());
    shm_unlink(other.c_str());
}

}  // namespace
}  // namespace shmbus::detail
