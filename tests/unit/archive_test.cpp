// The archive files on their own: append, read back by id and by time, recovery after a cut at
// any byte, retention by size and age, and verify's report of damage.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include "archive.h"

namespace {

namespace fs = std::filesystem;
using namespace shmbus;
using namespace shmbus::detail::archive;

class ArchiveFiles : public ::testing::Test {
protected:
    void SetUp() override {
        dir_ = fs::temp_directory_path() / ("shmbus-archive-" + std::to_string(::getpid()) + "-" +
                                            ::testing::UnitTest::GetInstance()->current_test_info()->name());
        fs::remove_all(dir_);
        fs::create_directories(dir_);
        fd_ = ::open(dir_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        ASSERT_GE(fd_, 0);
    }
    void TearDown() override {
        ::close(fd_);
        fs::remove_all(dir_);
    }
    static std::vector<std::byte> body_of(uint64_t id) {
        std::vector<std::byte> b(8 + id % 97);
        for (std::size_t i = 0; i < b.size(); ++i) b[i] = std::byte((id * 131 + i) & 0xFF);
        return b;
    }
    // Appends ids [from, to) (each id * 2 apart in time), in batches written as the archiver does.
    static void fill(Writer& w, uint64_t from, uint64_t to, uint64_t id_step = 1) {
        for (uint64_t id = from; id < to; id += id_step) {
            const auto b = body_of(id);
            ASSERT_TRUE(w.append(id, 1'000'000 + id * 2, 0, b));
            if (id % 100 == 0) {
                ASSERT_TRUE(w.write(false));
            }
        }
        ASSERT_TRUE(w.write(false));
    }
    // Everything a reader yields from `id` on, checked against body_of.
    std::vector<uint64_t> read_from(uint64_t id) {
        auto r = Reader::open(::dup(fd_), "t");
        EXPECT_TRUE(r);
        EXPECT_TRUE(r->seek_id(id));
        std::vector<uint64_t> ids;
        StoredRecord rec;
        Reader::Step step;
        while ((step = r->next(rec)) == Reader::Step::record) {
            const auto want = body_of(rec.id);
            EXPECT_EQ(std::vector<std::byte>(rec.body.begin(), rec.body.end()), want) << rec.id;
            ids.push_back(rec.id);
        }
        EXPECT_EQ(step, Reader::Step::end) << r->why();
        return ids;
    }
    static ArchiveSettings small_files() {
        ArchiveSettings s;
        s.file_bytes = 64 * 1024;
        return s;
    }
    fs::path dir_;
    int fd_ = -1;
};

TEST_F(ArchiveFiles, Crc32cMatchesTheKnownCheckValue) {
    const char text[] = "123456789";
    EXPECT_EQ(crc32c(0, text, 9), 0xE3069283u);  // the CRC-32C check value
    EXPECT_EQ(crc32c(crc32c(0, text, 4), text + 4, 5), 0xE3069283u);
}

TEST_F(ArchiveFiles, RecordsComeBackInOrderAcrossFilesFromAnyId) {
    {
        auto w = Writer::open(fd_, "t", small_files());
        ASSERT_TRUE(w);
        EXPECT_TRUE(w->empty());
        fill(*w, 10, 5000);
    }
    EXPECT_GT(list_logs(fd_)->size(), 3u);
    auto all = read_from(0);
    ASSERT_EQ(all.size(), 4990u);
    for (std::size_t i = 0; i < all.size(); ++i) ASSERT_EQ(all[i], 10 + i);
    for (uint64_t from : {10u, 11u, 777u, 2500u, 4999u}) {
        auto ids = read_from(from);
        ASSERT_EQ(ids.size(), 5000 - from) << from;
        EXPECT_EQ(ids.front(), from);
    }
    EXPECT_TRUE(read_from(5000).empty());
}

TEST_F(ArchiveFiles, ReopeningResumesAfterTheLastRecord) {
    {
        auto w = Writer::open(fd_, "t", small_files());
        fill(*w, 0, 1000, 3);  // gaps between ids, as skipped claims leave
    }
    auto w = Writer::open(fd_, "t", small_files());
    ASSERT_TRUE(w);
    EXPECT_EQ(w->last_id(), 999u);
    EXPECT_FALSE(w->append(999, 0, 0, body_of(999)));  // ids must rise
    fill(*w, 1002, 1100, 3);
    auto ids = read_from(0);
    ASSERT_EQ(ids.size(), 334u + 33u);
    EXPECT_EQ(ids.back(), 1100u - 2);
}

TEST_F(ArchiveFiles, TimeSeekFindsTheFirstRecordThatLate) {
    {
        auto w = Writer::open(fd_, "t", small_files());
        fill(*w, 0, 3000);
    }
    auto r = Reader::open(::dup(fd_), "t");
    ASSERT_TRUE(r->seek_time(1'000'000 + 2 * 1234));
    StoredRecord rec;
    ASSERT_EQ(r->next(rec), Reader::Step::record);
    EXPECT_EQ(rec.id, 1234u);
    ASSERT_TRUE(r->seek_time(1'000'000 + 2 * 1234 - 1));
    ASSERT_EQ(r->next(rec), Reader::Step::record);
    EXPECT_EQ(rec.id, 1234u);
    ASSERT_TRUE(r->seek_time(1));
    ASSERT_EQ(r->next(rec), Reader::Step::record);
    EXPECT_EQ(rec.id, 0u);
    ASSERT_TRUE(r->seek_time(9'000'000));
    EXPECT_EQ(r->next(rec), Reader::Step::end);
}

// The crash test of the format: whatever byte the last file is cut at, reopening keeps every whole
// record before the cut and nothing after it, and appending then goes on from there.
TEST_F(ArchiveFiles, ACutAtAnyByteKeepsEveryWholeRecordBeforeIt) {
    {
        auto w = Writer::open(fd_, "t", ArchiveSettings{});
        fill(*w, 1, 400);
    }
    const fs::path log = dir_ / log_name(1);
    const auto full = fs::file_size(log);
    // Where each record ends, from a scan of the intact file.
    std::vector<std::pair<uint64_t, uint64_t>> ends;  // (end offset, id)
    {
        auto s = LogScanner::open(::open(log.c_str(), O_RDONLY | O_CLOEXEC), "t", log.filename().string());
        StoredRecord rec;
        while (s->next(rec) == LogScanner::Step::record) ends.emplace_back(s->offset(), rec.id);
    }
    std::vector<char> original(full);
    {
        const int f = ::open(log.c_str(), O_RDONLY);
        ASSERT_EQ(::pread(f, original.data(), full, 0), ssize_t(full));
        ::close(f);
    }
    std::mt19937_64 rng(42);
    std::vector<uint64_t> cuts = {sizeof(layout::ArchiveFileHeader), sizeof(layout::ArchiveFileHeader) + 1, full - 1};
    for (int i = 0; i < 60; ++i) cuts.push_back(sizeof(layout::ArchiveFileHeader) + rng() % (full - sizeof(layout::ArchiveFileHeader)));
    for (const uint64_t cut : cuts) {
        {
            const int f = ::open(log.c_str(), O_WRONLY | O_TRUNC);
            ASSERT_EQ(::write(f, original.data(), cut), ssize_t(cut));
            ::close(f);
        }
        uint64_t expect_last = 0, expect_end = sizeof(layout::ArchiveFileHeader);
        for (auto [end, id] : ends)
            if (end <= cut) expect_last = id, expect_end = end;
        auto w = Writer::open(fd_, "t", ArchiveSettings{});
        ASSERT_TRUE(w) << w.error().message;
        EXPECT_EQ(w->empty() ? 0 : w->last_id(), expect_last) << "cut at " << cut;
        EXPECT_EQ(w->recovered_cut_bytes(), cut - expect_end);
        EXPECT_EQ(fs::file_size(log), expect_end);
        auto v = verify(fd_, "t");
        ASSERT_TRUE(v);
        EXPECT_TRUE(v->ok()) << v->damage.front();
        EXPECT_EQ(v->records, expect_last);
        // Appending goes on from the cut: no gap, no repeat.
        ASSERT_TRUE(w->append(expect_last + 1, 0, 0, body_of(expect_last + 1)));
        ASSERT_TRUE(w->write(false));
        auto ids = read_from(0);
        ASSERT_EQ(ids.size(), expect_last + 1);
        EXPECT_EQ(ids.back(), expect_last + 1);
    }
}

TEST_F(ArchiveFiles, AFileCutInsideItsHeaderIsDroppedAndTheOneBeforeKept) {
    {
        auto w = Writer::open(fd_, "t", small_files());
        fill(*w, 0, 2000);
    }
    auto logs = *list_logs(fd_);
    ASSERT_GE(logs.size(), 2u);
    ::truncate((dir_ / logs.back().name).c_str(), 50);
    auto w = Writer::open(fd_, "t", small_files());
    ASSERT_TRUE(w) << w.error().message;
    EXPECT_EQ(w->last_id(), logs.back().first_id - 1);
    EXPECT_EQ(list_logs(fd_)->size(), logs.size() - 1);
}

TEST_F(ArchiveFiles, VerifyNamesAFlippedByteAndReadersStopThere) {
    {
        auto w = Writer::open(fd_, "t", small_files());
        fill(*w, 0, 3000);
    }
    auto logs = *list_logs(fd_);
    const fs::path victim = dir_ / logs[1].name;
    {
        const int f = ::open(victim.c_str(), O_RDWR);
        char c = 0;
        ASSERT_EQ(::pread(f, &c, 1, 1000), 1);
        c ^= 0x40;
        ASSERT_EQ(::pwrite(f, &c, 1, 1000), 1);
        ::close(f);
    }
    auto v = verify(fd_, "t");
    ASSERT_TRUE(v);
    ASSERT_EQ(v->damage.size(), 1u);
    EXPECT_NE(v->damage[0].find(logs[1].name), std::string::npos);
    EXPECT_NE(v->damage[0].find("checksum"), std::string::npos) << v->damage[0];
    auto r = Reader::open(::dup(fd_), "t");
    ASSERT_TRUE(r->seek_id(logs[1].first_id));
    StoredRecord rec;
    Reader::Step step;
    while ((step = r->next(rec)) == Reader::Step::record) {}
    EXPECT_EQ(step, Reader::Step::broken);
    EXPECT_NE(r->why().find("checksum"), std::string::npos);
}

TEST_F(ArchiveFiles, ForeignFilesAreRefusedWithAClearMessage) {
    {
        auto w = Writer::open(fd_, "other", ArchiveSettings{});
        fill(*w, 0, 10);
    }
    auto w = Writer::open(fd_, "t", ArchiveSettings{});
    ASSERT_FALSE(w);
    EXPECT_NE(w.error().message.find("belongs to topic 'other'"), std::string::npos) << w.error().message;
    const int f = ::open((dir_ / log_name(0)).c_str(), O_WRONLY);
    ASSERT_EQ(::pwrite(f, "garbage!", 8, 0), 8);
    ::close(f);
    auto v = verify(fd_, "t");
    ASSERT_TRUE(v);
    ASSERT_EQ(v->damage.size(), 1u);
    EXPECT_NE(v->damage[0].find("not a shmbus archive file"), std::string::npos) << v->damage[0];
}

TEST_F(ArchiveFiles, RetentionDeletesWholeOldestFilesOnly) {
    auto s = small_files();
    s.retain_bytes = 200 * 1024;
    auto w = Writer::open(fd_, "t", s);
    fill(*w, 0, 20000);
    const auto before = list_logs(fd_)->size();
    auto deleted = w->apply_retention(0);
    ASSERT_TRUE(deleted);
    EXPECT_GT(*deleted, 0u);
    const auto logs = *list_logs(fd_);
    EXPECT_EQ(logs.size(), before - *deleted);
    auto info = describe(fd_, "t");
    ASSERT_TRUE(info);
    EXPECT_LE(info->bytes, s.retain_bytes);
    EXPECT_GT(info->bytes, s.retain_bytes - 2 * s.file_bytes);
    EXPECT_EQ(*info->last_id, 19999u);
    EXPECT_EQ(*info->first_id, logs.front().first_id);  // a whole file went, never part of one
    for (const auto& f : logs) EXPECT_TRUE(fs::exists(dir_ / index_name(f.first_id)));
    // Reading from an id retention deleted starts at the oldest one kept.
    auto ids = read_from(0);
    EXPECT_EQ(ids.front(), *info->first_id);
    EXPECT_EQ(ids.size(), info->records);

    // By age: every file begun before `now - retain_time` goes, but never the newest.
    ArchiveSettings aged = small_files();
    aged.retain_time = std::chrono::seconds(1);
    w->set_settings(aged);
    deleted = w->apply_retention(UINT64_MAX / 2);
    ASSERT_TRUE(deleted);
    EXPECT_EQ(list_logs(fd_)->size(), 1u);
}

}  // namespace
