// Unit tests of archive files: a fresh directory per test (named after it), opened as the
// archiver and readers open theirs, removed afterwards.
#pragma once

#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
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
    std::filesystem::path dir_;
    int fd_ = -1;  // the directory
};

}  // namespace shmbus::test
