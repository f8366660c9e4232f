// Archived topics in process tests: a topic archived at creation, its archiver, its files read
// directly, and a reboot simulated by removing its segments from /dev/shm.
#pragma once

#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "archive/archive.h"
#include "peer_fixture.h"
#include "test_payload.h"

namespace shmbus::test {

class Archive : public PeerTest {
protected:
    // An archived topic: created with `config`, then archived with `settings` (an on-full archive
    // topic is archived at creation; the settings then replace the defaults).
    void make_archived(const std::string& topic, TopicConfig config, ArchiveSettings settings = {}) {
        auto c = connect();
        ASSERT_TRUE(c);
        ASSERT_TRUE(c->create_topic(topic, config));
        ASSERT_TRUE(c->set_archive(topic, settings));
    }
    std::optional<int32_t> archiver_pid(const std::string& topic) {
        auto s = stats(topic);
        if (!s) return std::nullopt;
        for (const auto& sub : s->subscriptions)
            if (sub.name == "$archiver" && sub.attached && sub.pid > 0) return sub.pid;
        return std::nullopt;
    }
    std::optional<uint64_t> archived_last_id(const std::string& topic) {
        auto c = connect();
        if (!c) return std::nullopt;
        auto info = c->archive_info(topic);
        if (!info) return std::nullopt;
        return info->last_id;
    }
    std::string archive_dir(const std::string& topic) const { return dir + "/state/topics/" + topic + "/archive"; }

    // Every record of the archive, read from its files, each payload checked against its checksum.
    struct Archived {
        std::vector<uint64_t> ids;
        uint64_t bad = 0;
        std::string broken;
    };
    Archived read_archive(const std::string& topic) {
        Archived out;
        const int fd = ::open(archive_dir(topic).c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0) {
            out.broken = "no archive directory";
            return out;
        }
        auto reader = detail::archive::Reader::open(fd, topic);
        EXPECT_TRUE(reader->seek_id(0));
        detail::archive::StoredRecord r;
        detail::archive::Reader::Step step;
        while ((step = reader->next(r)) == detail::archive::Reader::Step::record) {
            Payload p{};
            if (r.body.size() < sizeof p) {
                ++out.bad;
                continue;
            }
            std::memcpy(&p, r.body.data(), sizeof p);
            if (p.checksum != checksum_of(p.producer, p.seq) || p.seq != r.id) ++out.bad;
            out.ids.push_back(r.id);
        }
        if (step == detail::archive::Reader::Step::broken) out.broken = reader->why();
        return out;
    }
    // The ids 0 .. count-1, each once and in order.
    static ::testing::AssertionResult exactly(const std::vector<uint64_t>& ids, uint64_t count) {
        if (ids.size() != count) return ::testing::AssertionFailure() << ids.size() << " records, not " << count;
        for (uint64_t i = 0; i < count; ++i)
            if (ids[i] != i) return ::testing::AssertionFailure() << "record " << i << " has id " << ids[i];
        return ::testing::AssertionSuccess();
    }
    // The topic's segments removed from /dev/shm, as a reboot would.
    void remove_segments(const std::string& topic) {
        std::string bus_id = read_file(path("bus.id"));
        bus_id = bus_id.substr(0, bus_id.find('\n'));
        int removed = 0;
        for (const auto& e : std::filesystem::directory_iterator("/dev/shm")) {
            const std::string name = e.path().filename().string();
            if (name == "shmbus-" + bus_id + "-" + topic || name == "shmbus-" + bus_id + "-" + topic + "@cursors") {
                std::filesystem::remove(e.path());
                ++removed;
            }
        }
        EXPECT_EQ(removed, 2);
    }
};

}  // namespace shmbus::test
