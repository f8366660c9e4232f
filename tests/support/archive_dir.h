// Unit tests of archive files: a fresh directory per test (named after it), opened as the
// archiver and readers open theirs, removed afterwards; records whose bodies say their id.
#pragma once

#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>

#include "archive/archive.h"
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace shmbus::test {

class ArchiveDirTest : public ::testing::Test {
protected:
    void SetUp() override {
        dir_ = std::filesystem::temp_directory_path() /
               ("shmbus-archive-" + std::to_string(::getpid()) + "-" +
                ::testing::UnitTest::GetInstance()->current_test_info()->name());
        std::filesystem::remove_all(dir_);
        std::filesystem::create_directories(dir_);
        fd_ = ::open(dir_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        ASSERT_GE(fd_, 0);
    }
    void TearDown() override {
        ::close(fd_);
        std::filesystem::remove_all(dir_);
    }
    // A record body that says which id it is: `base + id % spread` bytes of a pattern of the id.
    static std::vector<std::byte> patterned_body(uint64_t id, std::size_t base, std::size_t spread) {
        std::vector<std::byte> b(base + id % spread);
        for (std::size_t i = 0; i < b.size(); ++i) b[i] = std::byte((id * 131 + i) & 0xFF);
        return b;
    }
    // Every record a reader of the directory yields from `id` on, each body checked against
    // patterned_body(base, spread), and that the reader ended cleanly.
    std::vector<uint64_t> read_from(uint64_t id, std::size_t base, std::size_t spread) {
        using namespace shmbus::detail::archive;
        auto r = Reader::open(::dup(fd_), "t");
        EXPECT_TRUE(r);
        EXPECT_TRUE(r->seek_id(id));
        std::vector<uint64_t> ids;
        StoredRecord rec;
        Reader::Step step;
        while ((step = r->next(rec)) == Reader::Step::record) {
            EXPECT_EQ(std::vector<std::byte>(rec.body.begin(), rec.body.end()), patterned_body(rec.id, base, spread)) << rec.id;
            ids.push_back(rec.id);
        }
        EXPECT_EQ(step, Reader::Step::end) << r->why();
        return ids;
    }
    std::filesystem::path dir_;
    int fd_ = -1;  // the directory
};

}  // namespace shmbus::test
