// Compacted archives on their own: the key table's rule (latest per key, tombstones, eviction past
// max_keys), compaction of a file (survivors in order, an emptied file removed, damage left alone),
// and readers that pair a log with the other version's index.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <string>
#include <vector>

#include "archive/archive.h"
#include "archive_dir.h"
#include "archive/key_table.h"

namespace {

namespace fs = std::filesystem;
using namespace shmbus;
using namespace shmbus::detail::archive;

TEST(KeyTable, EachKeysLatestRecordTombstonesDeleteAndTheOldestKeyIsEvicted) {
    KeyTable t(3);
    t.apply(1, "a", false, 10);
    t.apply(2, "b", false, 20);
    t.apply(3, "a", false, 30);  // supersedes 1
    EXPECT_FALSE(t.is_latest(1, "a"));
    EXPECT_TRUE(t.is_latest(3, "a"));
    EXPECT_EQ(t.live_ids(), (std::vector<uint64_t>{2, 3}));
    t.apply(4, "b", true, 40);  // deletes b: its tombstone is b's latest
    EXPECT_TRUE(t.is_latest(4, "b"));
    EXPECT_EQ(t.live_ids(), (std::vector<uint64_t>{3}));
    EXPECT_EQ(t.tombstones(), 1u);
    t.apply(5, "c", false, 50);
    t.apply(6, "d", false, 60);
    t.apply(7, "e", false, 70);  // a fourth live key: a (updated longest ago, id 3) goes
    EXPECT_EQ(t.live_ids(), (std::vector<uint64_t>{5, 6, 7}));
    EXPECT_FALSE(t.is_latest(3, "a"));
    EXPECT_EQ(t.evicted(), 1u);
    EXPECT_EQ(t.superseded(), 3u);  // 1 by 3, 2 by 4, 3 evicted
    EXPECT_TRUE(t.stale_tombstone("b", 41));
    EXPECT_FALSE(t.stale_tombstone("b", 40));
    EXPECT_FALSE(t.stale_tombstone("c", 1000));  // alive
    t.forget("b");
    EXPECT_FALSE(t.is_latest(4, "b"));
    EXPECT_EQ(t.tombstones(), 0u);
    t.forget("c");  // only tombstones are forgotten
    EXPECT_TRUE(t.is_latest(5, "c"));
}

class CompactFile : public shmbus::test::ArchiveDirTest {
protected:
    static std::vector<std::byte> body_of(uint64_t id) { return patterned_body(id, 200, 53); }
    // Ids [0, count) in files of about `file_bytes` (several index entries each).
    void fill(uint64_t count, uint64_t file_bytes) {
        ArchiveSettings s;
        s.file_bytes = file_bytes;
        auto w = Writer::open(fd_, "t", s);
        ASSERT_TRUE(w);
        for (uint64_t id = 0; id < count; ++id) ASSERT_TRUE(w->append(id, 1'000 + id, 0, body_of(id)));
        ASSERT_TRUE(w->write(false));
    }
    std::vector<uint64_t> read_from(uint64_t id) { return ArchiveDirTest::read_from(id, 200, 53); }
};

// Every third record kept: readers find exactly those, in order, from any id, through the new
// index; a file whose records are all dropped is removed; the files verify.
TEST_F(CompactFile, TheKeptRecordsStayInOrderAndAnEmptiedFileGoes) {
    fill(3000, 256 << 10);
    auto files = list_logs(fd_);
    ASSERT_TRUE(files);
    ASSERT_GE(files->size(), 3u);
    const LogFile first = files->at(0), second = files->at(1);
    auto done = compact_file(fd_, "t", first, [](const StoredRecord& r) { return r.id % 3 == 0; }, true);
    ASSERT_TRUE(done) << done.error().message;
    EXPECT_FALSE(done->removed);
    EXPECT_LT(done->bytes_after, done->bytes_before / 2);
    auto gone = compact_file(fd_, "t", second, [](const StoredRecord&) { return false; }, false);
    ASSERT_TRUE(gone);
    EXPECT_TRUE(gone->removed);
    EXPECT_FALSE(fs::exists(dir_ / second.name));
    EXPECT_FALSE(fs::exists(dir_ / index_name(second.first_id)));
    const uint64_t third_first = files->at(2).first_id;
    std::vector<uint64_t> want;
    for (uint64_t id = 0; id < 3000; ++id)
        if ((id < second.first_id && id % 3 == 0) || id >= third_first) want.push_back(id);
    for (uint64_t from : {uint64_t(0), uint64_t(700), second.first_id - 1, second.first_id + 5}) {
        std::vector<uint64_t> expected;
        for (uint64_t id : want)
            if (id >= from) expected.push_back(id);
        EXPECT_EQ(read_from(from), expected) << "from " << from;
    }
    auto report = verify(fd_, "t");
    ASSERT_TRUE(report);
    EXPECT_TRUE(report->ok());
}

// A reader may open the new log with the old index or the old log with the new one (the two are
// renamed one after the other): an entry that points at another record is not followed.
TEST_F(CompactFile, AReaderPairingALogWithTheOtherVersionsIndexStillReadsRight) {
    fill(2000, 1 << 20);
    auto files = list_logs(fd_);
    ASSERT_TRUE(files);
    const LogFile f = files->at(0);
    const fs::path log = dir_ / f.name, idx = dir_ / index_name(f.first_id);
    fs::copy_file(log, dir_ / "old.log.keep");
    fs::copy_file(idx, dir_ / "old.idx.keep");
    ASSERT_TRUE(compact_file(fd_, "t", f, [](const StoredRecord& r) { return r.id % 2 == 1; }, false));
    std::vector<uint64_t> odd;
    for (uint64_t id = 1501; id < 2000; id += 2) odd.push_back(id);
    // The new log with the old index.
    fs::copy_file(dir_ / "old.idx.keep", idx, fs::copy_options::overwrite_existing);
    EXPECT_EQ(read_from(1500), odd);
    // The old log with the new index: everything from 1500 on, as the old log holds it.
    ASSERT_TRUE(compact_file(fd_, "t", f, [](const StoredRecord&) { return true; }, false));  // rebuilds the new index
    fs::copy_file(dir_ / "old.log.keep", log, fs::copy_options::overwrite_existing);
    std::vector<uint64_t> all;
    for (uint64_t id = 1500; id < 2000; ++id) all.push_back(id);
    EXPECT_EQ(read_from(1500), all);
}

// Damage in a closed file is never compacted away: the file stays as it is for an operator.
TEST_F(CompactFile, AFileWithDamageIsLeftAsItIs) {
    fill(1000, 1 << 20);
    auto files = list_logs(fd_);
    ASSERT_TRUE(files);
    const fs::path log = dir_ / files->at(0).name;
    const auto size = fs::file_size(log);
    {
        const int fd = ::open(log.c_str(), O_RDWR);
        ASSERT_GE(fd, 0);
        const char flip = 0x5A;
        ASSERT_EQ(::pwrite(fd, &flip, 1, off_t(size / 2)), 1);
        ::close(fd);
    }
    auto done = compact_file(fd_, "t", files->at(0), [](const StoredRecord&) { return false; }, false);
    ASSERT_FALSE(done);
    EXPECT_NE(done.error().message.find("not compacted"), std::string::npos) << done.error().message;
    EXPECT_EQ(fs::file_size(log), size);
    for (const auto& e : fs::directory_iterator(dir_)) EXPECT_EQ(e.path().string().find(".compacting"), std::string::npos);
}

}  // namespace
