// The archiver of one topic: a durable reader of the ring that appends every message to the
// topic's archive and acknowledges it only once written. Crash-only: any failure it cannot
// simply wait out (a full disk, an I/O error) ends the process, and shmbusd starts it again;
// starting cuts the archive back to its last whole record and skips what the cursor delivers
// again up to it, so each message is archived exactly once whenever it is killed.
#include <fcntl.h>
#include <signal.h>
#include <spdlog/spdlog.h>
#include <sys/file.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <thread>

#include "archive/archive.h"
#include "archives/archives.h"
#include "core/futex.h"
#include "record/raw_record.h"
#include "core/untrusted_files.h"
#include "core/wall_clock.h"
#include "shmbus/client.h"

namespace shmbus::daemon {

namespace {

// How long the archiver waits when it finds nothing new: at most this much behind the ring.
constexpr std::chrono::milliseconds kIdleNap{1};

std::atomic<bool> g_stop{false};
std::atomic<bool> g_reload{false};

void on_signal(int sig) {
    if (sig == SIGHUP) g_reload.store(true, std::memory_order_relaxed);  // relaxed: a flag polled by the loop
    else g_stop.store(true, std::memory_order_relaxed);
}

// The archive directory's lock: a second archiver of the same topic (an older one still
// exiting) must not write beside this one.
bool lock_topic(const std::string& dir) {
    const std::string path = dir + "/archiver.lock";
    auto opened = detail::open_checked_at(AT_FDCWD, path, O_RDWR | O_CREAT, 0600, true);
    if (!opened) {
        spdlog::error("{}", opened.error().message);
        return false;
    }
    const int fd = *opened;
    for (int i = 0; i < 200; ++i) {  // 10 s
        if (::flock(fd, LOCK_EX | LOCK_NB) == 0) {
            const std::string pid = std::to_string(getpid()) + "\n";
            (void)!::ftruncate(fd, 0);
            (void)!::pwrite(fd, pid.data(), pid.size(), 0);
            return true;  // the descriptor stays open, and the lock held, until we exit
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    spdlog::error("another archiver holds {}", path);
    return false;
}

}  // namespace

int run_archiver(const std::string& topic, const std::string& bus_dir, const std::string& state_dir) {
    signal(SIGPIPE, SIG_IGN);
    signal(SIGXFSZ, SIG_IGN);
    const std::string dir = state_dir + "/topics/" + topic;
    for (const std::string& d : {state_dir, dir}) {
        if (auto st = detail::check_private_dir(d, "state directory", false); !st) {
            spdlog::error("archiver of '{}': {}", topic, st.error().message);
            return 1;
        }
    }
    if (!lock_topic(dir)) return 1;
    auto settings = load_archive_settings(dir + "/topic.toml");
    if (!settings) {
        spdlog::error("archiver of '{}': {}", topic, settings.error().message);
        return 1;
    }
    auto archive_dir = detail::open_checked_at(AT_FDCWD, dir + "/archive", O_RDONLY | O_DIRECTORY, 0, true);
    if (!archive_dir) {
        spdlog::error("archiver of '{}': {}", topic, archive_dir.error().message);
        return 1;
    }
    const int dir_fd = *archive_dir;
    auto writer = detail::archive::Writer::open(dir_fd, topic, *settings, load_archive_max_record(dir + "/topic.toml"));
    if (!writer) {
        spdlog::error("archiver of '{}': {}", topic, writer.error().message);
        return 1;
    }
    if (!writer->damage().empty())
        spdlog::error("archiver of '{}': the archive is damaged ({}); the file is kept as it is, readers step over the "
                      "damage and count what it held as lost, and new records go to a new file", topic, writer->damage());
    if (writer->recovered_cut_bytes() != 0)
        spdlog::warn("archiver of '{}': cut {} bytes of an unfinished record from the end of the archive", topic,
                     writer->recovered_cut_bytes());

    ClientOptions co;
    co.dir = bus_dir;
    co.name = "archiver";
    co.connect_wait = std::chrono::seconds(5);
    auto client = Client::connect(co);
    if (!client) {
        spdlog::error("archiver of '{}': {}", topic, client.error().message);
        return 1;
    }
    SubscribeOptions so;
    so.durable_name = kArchiverSubscription;
    so.from = StartFrom::earliest;
    so.auto_ack = false;
    // It never sleeps on the topic's data futex: a sleeper there would make every publish pay a
    // wake-up (a system call), for a reader that needs no microsecond latency. It polls, and naps
    // kIdleNap when it finds nothing; publishers a full ring holds back are woken by its acks.
    so.wait = WaitStrategy::busy_spin;
    auto sub = client->subscribe(topic, so);
    if (!sub) {
        spdlog::error("archiver of '{}': {}", topic, sub.error().message);
        return 1;
    }
    // Until here a stop request ends it at once (it has written nothing that needs finishing);
    // from here on it finishes the batch in hand first.
    struct sigaction sa{};
    sa.sa_handler = on_signal;
    sigaction(SIGTERM, &sa, nullptr);
    sigaction(SIGINT, &sa, nullptr);
    sigaction(SIGHUP, &sa, nullptr);
    spdlog::info("archiver of '{}' (pid {}): archive ends at id {}, reading from id {}", topic, getpid(),
                 writer->empty() ? std::string("(empty)") : std::to_string(writer->last_id()), sub->next_id());

    // Ends the process on a write failure: a restart finds the archive whole up to its last record.
    auto fail = [&](const Error& e) {
        spdlog::error("archiver of '{}': {}; publishers are held back until it can write again", topic, e.message);
        return 1;
    };
    uint64_t next_tick = detail::monotonic_ns();
    for (;;) {
        if (g_stop.load(std::memory_order_relaxed)) break;  // relaxed: see on_signal
        if (g_reload.exchange(false, std::memory_order_relaxed)) {
            if (auto s = load_archive_settings(dir + "/topic.toml")) writer->set_settings(*s);
        }
        std::optional<Message> last;
        std::optional<Error> error;
        const PollResult r = sub->poll(
            [&](const Message& m) {
                if (error) return;
                if (m.lost_before != 0)
                    spdlog::warn("archiver of '{}': {} message(s) before id {} were overwritten before they could be archived "
                                 "(on-full overwrite)", topic, m.lost_before, m.id);
                last = m;
                if (!writer->empty() && m.id <= writer->last_id()) return;  // archived before a crash, not acked then
                if (Status s = writer->append(m.id, m.timestamp_ns, detail::RawRecord::flags(m), detail::RawRecord::body(m)); !s)
                    error = s.error();
            },
            4096);
        if (error) return fail(*error);
        if (r.status == ReceiveStatus::empty) std::this_thread::sleep_for(kIdleNap);
        if (r.status == ReceiveStatus::deleted) {
            spdlog::info("archiver of '{}': the topic was deleted", topic);
            break;
        }
        if (r.status == ReceiveStatus::corrupt) return fail(make_error(Errc::corrupt_segment, "the ring is damaged"));
        if (last) {
            if (Status s = writer->write(writer->settings().fsync == ArchiveFsync::always); !s) return fail(s.error());
            (void)sub->ack(*last);  // everything up to it is written: the ring may let it go
        }
        if (const uint64_t now = detail::monotonic_ns(); now >= next_tick) {
            next_tick = now + 1'000'000'000;
            if (writer->settings().fsync == ArchiveFsync::interval)
                if (Status s = writer->write(true); !s) return fail(s.error());
            auto deleted = writer->apply_retention(detail::WallClock::system_ns());
            if (!deleted) spdlog::warn("archiver of '{}': retention: {}", topic, deleted.error().message);
            else if (*deleted != 0) spdlog::info("archiver of '{}': retention deleted {} file(s)", topic, *deleted);
        }
    }
    if (Status s = writer->write(writer->settings().fsync != ArchiveFsync::never); !s) return fail(s.error());
    spdlog::info("archiver of '{}' stopped", topic);
    spdlog::shutdown();
    // Without saying goodbye: shmbusd, which asked us to stop, waits for our exit rather than
    // serving an unsubscribe, and the cursor (durable) is kept either way.
    ::_exit(0);
}

}  // namespace shmbus::daemon
