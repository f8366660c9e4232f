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

#include "archive/archive.h"
#include "archive_dir.h"

namespace {

namespace fs = std::filesystem;
using namespace shmbus;
using namespace shmbus::detail::archive;

class ArchiveFiles : public shmbus::test::ArchiveDirTest {
protected:
    static std::vector<std::byte> body_of(uint64_t id) { return patterned_body(id, 8, 97); }
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
    std::vector<uint64_t> read_from(uint64_t id) { return ArchiveDirTest::read_from(id, 8, 97); }
    static ArchiveSettings small_files() {
        ArchiveSettings s;
        s.file_bytes = 64 * 1024;
        return s;
    }
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

TEST_F(ArchiveFiles, VerifyNamesAFlippedByteAndReadersStepOverItCountingTheLoss) {
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
    uint64_t read = 0, lost = 0, last = 0;
    while ((step = r->next(rec)) == Reader::Step::record) {
        lost += r->take_lost();
        ++read;
        last = rec.id;
    }
    EXPECT_EQ(step, Reader::Step::end) << r->why();
    EXPECT_EQ(last, 2999u);  // on past the damaged file, to the end
    EXPECT_GT(lost, 0u);
    EXPECT_EQ(read + lost, 3000 - logs[1].first_id);  // every id read or counted lost
    EXPECT_NE(r->damage().find("checksum"), std::string::npos) << r->damage();
    EXPECT_NE(r->damage().find(logs[1].name), std::string::npos) << r->damage();
}

// A length no record of the topic can have, in the newest file: damage, not a record still being
// written. verify says so, the writer keeps the file as it is (the acknowledged records after the
// damage are not cut) and starts a new one, and nothing reads or allocates what the length claims.
TEST_F(ArchiveFiles, AnImpossibleLengthInTheNewestFileIsDamageNeverCut) {
    constexpr uint32_t kMaxRecord = 200;
    {
        auto w = Writer::open(fd_, "t", ArchiveSettings{}, kMaxRecord);
        fill(*w, 0, 600);
    }
    auto logs = *list_logs(fd_);
    ASSERT_EQ(logs.size(), 1u);
    const fs::path newest = dir_ / logs[0].name;
    uint64_t offset_547 = 0;
    {
        auto s = LogScanner::open(::open(newest.c_str(), O_RDONLY | O_CLOEXEC), "t", logs[0].name);
        ASSERT_TRUE(s);
        EXPECT_EQ(s->max_record(), kMaxRecord);
        StoredRecord rec;
        while (s->next(rec) == LogScanner::Step::record)
            if (rec.id == 547) offset_547 = rec.offset;
        ASSERT_NE(offset_547, 0u);
    }
    const uint32_t bad = 0x3fffffff;
    {
        const int f = ::open(newest.c_str(), O_RDWR);
        ASSERT_EQ(::pwrite(f, &bad, sizeof bad, off_t(offset_547)), ssize_t(sizeof bad));
        ::close(f);
    }
    const uint64_t size_before = fs::file_size(newest);
    auto v = verify(fd_, "t");
    ASSERT_TRUE(v);
    ASSERT_EQ(v->damage.size(), 1u) << "an impossible length is not a record being written";
    EXPECT_NE(v->damage[0].find("impossible record length"), std::string::npos) << v->damage[0];
    EXPECT_EQ(v->partial_tail_bytes, 0u);
    {
        auto w = Writer::open(fd_, "t", ArchiveSettings{}, kMaxRecord);
        ASSERT_TRUE(w);
        EXPECT_NE(w->damage().find(logs[0].name), std::string::npos) << w->damage();
        EXPECT_EQ(w->recovered_cut_bytes(), 0u);
        EXPECT_EQ(w->last_id(), 546u);
        fill(*w, 600, 700);  // the archiver resumes after its cursor, past what the damage hides
    }
    EXPECT_EQ(fs::file_size(newest), size_before) << "damage holding acknowledged records was cut";
    ASSERT_EQ(list_logs(fd_)->size(), 2u);
    auto r = Reader::open(::dup(fd_), "t");
    ASSERT_TRUE(r->seek_id(0));
    StoredRecord rec;
    uint64_t read = 0, lost = 0;
    while (r->next(rec) == Reader::Step::record) {
        lost += r->take_lost();
        ++read;
    }
    EXPECT_EQ(read, 547u + 100u);
    EXPECT_EQ(lost, 600u - 547u);
}

// A record longer than the archive's records may be is refused, never written.
TEST_F(ArchiveFiles, TheWriterRefusesARecordPastItsMaxRecord) {
    auto w = Writer::open(fd_, "t", ArchiveSettings{}, 16);
    std::vector<std::byte> big(17);
    auto st = w->append(1, 1, 0, big);
    ASSERT_FALSE(st);
    EXPECT_EQ(st.error().code, Errc::message_too_large);
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
