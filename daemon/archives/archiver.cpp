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
#include <memory>
#include <optional>
#include <thread>

#include "archive/archive.h"
#include "archives/archives.h"
#include "archives/compaction.h"
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

// One archiver: opens the archive (prepare), attaches to the ring (attach), then archives batch
// after batch (archive_batch) with the once-a-second work (tick) until stopped or the topic goes.
class Archiver {
public:
    Archiver(std::string topic, std::string bus_dir, const std::string& state_dir)
        : topic_(std::move(topic)), bus_dir_(std::move(bus_dir)), state_dir_(state_dir), dir_(state_dir + "/topics/" + topic_) {}

    int run() {
        if (!prepare() || !attach()) return 1;
        // Until here a stop request ends it at once (it has written nothing that needs finishing);
        // from here on it finishes the batch in hand first.
        struct sigaction sa{};
        sa.sa_handler = on_signal;
        sigaction(SIGTERM, &sa, nullptr);
        sigaction(SIGINT, &sa, nullptr);
        sigaction(SIGHUP, &sa, nullptr);
        spdlog::info("archiver of '{}' (pid {}): archive ends at id {}, reading from id {}", topic_, getpid(),
                     writer_->empty() ? std::string("(empty)") : std::to_string(writer_->last_id()), sub_->next_id());
        uint64_t next_tick = detail::monotonic_ns();
        while (!g_stop.load(std::memory_order_relaxed)) {  // relaxed: see on_signal
            if (g_reload.exchange(false, std::memory_order_relaxed)) {
                if (auto s = load_archive_settings(dir_ + "/topic.toml")) writer_->set_settings(*s);
                if (!start_compaction()) return 1;
            }
            const auto done = archive_batch();
            if (!done) return fail(done.error());
            if (*done) break;  // the topic was deleted
            if (const uint64_t now = detail::monotonic_ns(); now >= next_tick) {
                next_tick = now + 1'000'000'000;
                if (Status s = tick(); !s) return fail(s.error());
            }
        }
        if (Status s = writer_->write(writer_->settings().fsync != ArchiveFsync::never); !s) return fail(s.error());
        spdlog::info("archiver of '{}' stopped", topic_);
        spdlog::shutdown();
        // Without saying goodbye: shmbusd, which asked us to stop, waits for our exit rather than
        // serving an unsubscribe, and the cursor (durable) is kept either way.
        ::_exit(0);
    }

private:
    // The state directory checked, the topic locked, the archive opened and recovered.
    bool prepare() {
        for (const std::string& d : {state_dir_, dir_}) {
            if (auto st = detail::check_private_dir(d, "state directory", false); !st) return error(st.error());
        }
        if (!lock_topic(dir_)) return false;
        auto settings = load_archive_settings(dir_ + "/topic.toml");
        if (!settings) return error(settings.error());
        auto archive_dir = detail::open_checked_at(AT_FDCWD, dir_ + "/archive", O_RDONLY | O_DIRECTORY, 0, true);
        if (!archive_dir) return error(archive_dir.error());
        archive_dir_ = *archive_dir;  // open until the process ends
        auto writer = detail::archive::Writer::open(*archive_dir, topic_, *settings, load_archive_max_record(dir_ + "/topic.toml"));
        if (!writer) return error(writer.error());
        writer_.emplace(std::move(writer.value()));
        if (!writer_->damage().empty())
            spdlog::error("archiver of '{}': the archive is damaged ({}); the file is kept as it is, readers step over the "
                          "damage and count what it held as lost, and new records go to a new file", topic_, writer_->damage());
        if (writer_->recovered_cut_bytes() != 0)
            spdlog::warn("archiver of '{}': cut {} bytes of an unfinished record from the end of the archive", topic_,
                         writer_->recovered_cut_bytes());
        return start_compaction();
    }

    // A compacted archive's table of keys, read from the archive once (when the archiver starts,
    // or when the topic's archive becomes compacted).
    bool start_compaction() {
        const ArchiveSettings& s = writer_->settings();
        if (!s.compact) compaction_.reset();  // no longer compacted: a pass in progress finishes its file
        if (!s.compact || compaction_) return true;
        compaction_ = std::make_unique<Compaction>(topic_, archive_dir_, kept_keys(s));
        if (Status st = compaction_->load(); !st) return error(st.error());
        return true;
    }

    // The archiver's durable subscription, where its last ack left it.
    bool attach() {
        ClientOptions co;
        co.dir = bus_dir_;
        co.name = "archiver";
        co.connect_wait = std::chrono::seconds(5);
        auto client = Client::connect(co);
        if (!client) return error(client.error());
        client_.emplace(std::move(client.value()));
        SubscribeOptions so;
        so.durable_name = kArchiverSubscription;
        so.from = StartFrom::earliest;
        so.auto_ack = false;
        // It never sleeps on the topic's data futex: a sleeper there would make every publish pay a
        // wake-up (a system call), for a reader that needs no microsecond latency. It polls, and naps
        // kIdleNap when it finds nothing; publishers a full ring holds back are woken by its acks.
        so.wait = WaitStrategy::busy_spin;
        auto sub = client_->subscribe(topic_, so);
        if (!sub) return error(sub.error());
        sub_.emplace(std::move(sub.value()));
        return true;
    }

    // One poll's messages appended, written and acked. True once the topic was deleted.
    Result<bool> archive_batch() {
        std::optional<Message> last;
        std::optional<Error> failed;
        const PollResult r = sub_->poll(
            [&](const Message& m) {
                if (failed) return;
                if (m.lost_before != 0)
                    spdlog::warn("archiver of '{}': {} message(s) before id {} were overwritten before they could be archived "
                                 "(on-full overwrite)", topic_, m.lost_before, m.id);
                last = m;
                if (!writer_->empty() && m.id <= writer_->last_id()) return;  // archived before a crash, not acked then
                if (Status s = writer_->append(m.id, m.timestamp_ns, detail::RawRecord::flags(m), detail::RawRecord::body(m)); !s)
                    failed = s.error();
                else if (compaction_)
                    compaction_->appended(m, writer_->file_first_id());
            },
            4096);
        if (failed) return *failed;
        if (r.status == ReceiveStatus::empty) std::this_thread::sleep_for(kIdleNap);
        if (r.status == ReceiveStatus::deleted) {
            spdlog::info("archiver of '{}': the topic was deleted", topic_);
            return true;
        }
        if (r.status == ReceiveStatus::corrupt) return make_error(Errc::corrupt_segment, "the ring is damaged");
        if (last) {
            if (Status s = writer_->write(writer_->settings().fsync == ArchiveFsync::always); !s) return s.error();
            (void)sub_->ack(*last);  // everything up to it is written: the ring may let it go
        }
        return false;
    }

    // Once a second: the interval fsync, and retention or compaction.
    Status tick() {
        if (writer_->settings().fsync == ArchiveFsync::interval)
            if (Status s = writer_->write(true); !s) return s;
        if (compaction_) {
            // Compaction reads closed files only: what is buffered belongs to the file being written.
            compaction_->maybe_start(writer_->file_first_id(), writer_->settings().fsync != ArchiveFsync::never);
            return ok_status();
        }
        auto deleted = writer_->apply_retention(detail::WallClock::system_ns());
        if (!deleted) spdlog::warn("archiver of '{}': retention: {}", topic_, deleted.error().message);
        else if (*deleted != 0) spdlog::info("archiver of '{}': retention deleted {} file(s)", topic_, *deleted);
        return ok_status();
    }

    bool error(const Error& e) const {
        spdlog::error("archiver of '{}': {}", topic_, e.message);
        return false;
    }
    // Ends the process on a write failure: a restart finds the archive whole up to its last record.
    int fail(const Error& e) const {
        spdlog::error("archiver of '{}': {}; publishers are held back until it can write again", topic_, e.message);
        return 1;
    }

    const std::string topic_, bus_dir_, state_dir_, dir_;
    int archive_dir_ = -1;
    std::optional<detail::archive::Writer> writer_;
    std::unique_ptr<Compaction> compaction_;  // a compacted archive only
    std::optional<Client> client_;
    std::optional<Subscriber> sub_;
};

}  // namespace

int run_archiver(const std::string& topic, const std::string& bus_dir, const std::string& state_dir) {
    signal(SIGPIPE, SIG_IGN);
    signal(SIGXFSZ, SIG_IGN);
    return Archiver(topic, bus_dir, state_dir).run();
}

}  // namespace shmbus::daemon
