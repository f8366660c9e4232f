// The ring protocol shared by publishers, subscribers and the daemon: the tail word, record
// validation, the boundary index and start-position resolution. docs/architecture.md explains
// the protocol; each acquire/release below names its partner.
#pragma once

#include <atomic>
#include <cstdint>
#include <cstring>
#include <optional>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

#include "core/segment.h"
#include "shmbus/layout/record.h"
#include "shmbus/layout/segment_header.h"
#include "shmbus/topic.h"

#if defined(__x86_64__) && !defined(__GCC_HAVE_SYNC_COMPARE_AND_SWAP_16)
#error "shmbus needs a 16-byte compare-and-swap: build with -mcx16"
#endif

namespace shmbus::detail {

struct TailSnapshot {
    uint64_t position;
    uint64_t next_id;
};

struct Boundary {
    uint64_t position;  // a record boundary
    uint64_t id;        // id of the first message at or after it
};

enum class RecordCheck : uint8_t { ready, not_ready, corrupt };

struct RecordInfo {
    uint64_t size;    // bytes the record occupies in the ring (padding: up to the ring's end)
    uint32_t length;  // payload bytes
    uint16_t type;
    uint16_t flags;   // layout::RecordFlags
    uint64_t id;
    uint64_t timestamp_ns;
    // Where inspect() found it: the one position its bounds were checked for. A caller reads the
    // payload at this position, never at a position read again from shared memory, which a
    // hostile peer may have rewritten since (payload_at(r.position) stays inside the ring).
    uint64_t position;
};

class Ring {
public:
    explicit Ring(const Segment& s) noexcept
        : seg_(&s), ring_(s.ring()), mask_(s.mask()), cap_(s.capacity()), max_message_(s.max_message()),
          block_shift_(s.index_entries() != 0 ? uint32_t(__builtin_ctzll(s.capacity()) - __builtin_ctz(s.index_entries())) : 0) {}

    [[nodiscard]] uint64_t capacity() const noexcept { return cap_; }
    [[nodiscard]] layout::RecordHeader* header_at(uint64_t position) const noexcept {
        return reinterpret_cast<layout::RecordHeader*>(ring_ + (position & mask_));
    }
    [[nodiscard]] std::byte* payload_at(uint64_t position) const noexcept {
        return ring_ + (position & mask_) + sizeof(layout::RecordHeader);
    }

    // The tail position alone: producers only ever raise it (16-byte CAS), so an 8-byte
    // load of its low half sees some value it really had.
    [[nodiscard]] uint64_t tail_position(std::memory_order order = std::memory_order_acquire) const noexcept {
        return __atomic_load_n(&seg_->producers().tail.position, int(order));
    }
    // A consistent (position, next_id) pair without writing: the position strictly grows with
    // every claim, so if it reads the same before and after next_id, next_id belongs to it.
    [[nodiscard]] TailSnapshot read_tail() const noexcept {
        auto& t = seg_->producers().tail;
        for (;;) {
            // SYNC: acquire loads pair with the producers' 16-byte CAS of the tail (or the
            // exclusive publisher's 16-byte store_tail): position, id, position in that order.
            const uint64_t p1 = __atomic_load_n(&t.position, __ATOMIC_ACQUIRE);
            const uint64_t id = __atomic_load_n(&t.next_id, __ATOMIC_ACQUIRE);
            const uint64_t p2 = __atomic_load_n(&t.position, __ATOMIC_ACQUIRE);
            if (p1 == p2) return {p1, id};
        }
    }
    // The claim: one 16-byte CAS (a full barrier) moves position and id together, so ids follow
    // log order whatever the number of producers.
    [[nodiscard]] bool cas_tail(TailSnapshot expected, TailSnapshot desired) const noexcept {
        __extension__ typedef unsigned __int128 u128;
        auto* word = reinterpret_cast<u128*>(&seg_->producers().tail.position);
        const u128 e = (u128(expected.next_id) << 64) | expected.position;
        const u128 d = (u128(desired.next_id) << 64) | desired.position;
        return __sync_bool_compare_and_swap(word, e, d);
    }

    // A single-producer topic's claim: its one publisher stores the tail instead of exchanging it.
    // Both words in one 16-byte store, so readers (read_tail) see them change together as they
    // do with the CAS. Returns false where no such store is atomic: then the caller uses cas_tail.
    [[nodiscard]] bool store_tail(TailSnapshot desired) const noexcept {
#if defined(__x86_64__) && !defined(__SANITIZE_THREAD__)
        if (!kAtomicVectorStore) return false;
        store16(&seg_->producers().tail.position, desired.position, desired.next_id);
        return true;
#else
        (void)desired;  // TSan cannot see a vector store as atomic: the CAS keeps its view exact
        return false;
#endif
    }

    // True if the bytes at `position` may have been overwritten: a claim has ended more than a
    // ring past it. Checks the horizon first (a line producers write once per eighth of a ring)
    // and the tail, which every claim writes, only when the horizon says it might be so.
    [[nodiscard]] bool lapped(uint64_t position) const noexcept {
        // relaxed: callers order their reads before this with an acquire fence; the horizon and
        // the tail are raised by producers before they write any byte they claimed.
        if (seg_->producers().horizon.load(std::memory_order_relaxed) <= position + cap_) return false;
        return tail_position(std::memory_order_relaxed) > position + cap_;
    }

    // Raises the horizon to cover a claim ending at `end`, before the claim is made: an eighth of
    // the ring beyond it, rounded up to an index block, so that producers write the line once per
    // eighth of a ring (and a reader's cached copy stays valid that long), and a reader less than
    // 7/8 of a ring behind the tail never needs the tail itself. Returns the horizon now known.
    uint64_t raise_horizon(uint64_t end) const noexcept {
        auto& h = seg_->producers().horizon;
        const uint64_t block = uint64_t{1} << block_shift_;
        const uint64_t target = (end + cap_ / 8 + block - 1) & ~(block - 1);
        uint64_t seen = h.load(std::memory_order_relaxed);  // relaxed: the CAS below decides
        while (seen < end) {
            // SYNC: seq_cst CAS, before the tail CAS and before any byte of the claim is written;
            // pairs with the acquire fence a lapped reader executes before lapped().
            if (h.compare_exchange_weak(seen, target, std::memory_order_seq_cst)) return target;
        }
        return seen;
    }

    // Validates the record at `position` (bounds, type, length) without trusting any field.
    // `lines_after`: how many lines past the header's to fetch with the commit word (at least 1).
    [[nodiscard]] RecordCheck inspect(uint64_t position, RecordInfo& out, uint32_t lines_after = 1) const noexcept {
        const uint64_t offset = position & mask_;
        if (offset % layout::kRecordAlignment != 0) return RecordCheck::corrupt;
        auto* h = header_at(position);
        // SYNC: pairs with the release store of `commit` in PublisherCore::commit_record and
        // write_padding: everything the producer wrote before it is visible after this load.
        const uint64_t commit = h->commit.load(std::memory_order_acquire);
        // The line after the header's (and up to `lines_after` lines, a reader's guess from the
        // last record's size), loaded whatever the commit word says and without waiting for it:
        // a record of more than 32 bytes of payload goes on past the header's line, and the
        // publisher wrote those lines before the commit word, so a caught-up reader fetches them
        // together with it instead of one after another once it arrives (64 B ping-pong:
        // 1.12-1.25x Aeron's p50 -> 0.98-1.05x, paired). After the commit load in program order,
        // so what the copy reads is ordered after it as before; the values are never used.
        for (uint32_t i = 1; i <= lines_after; ++i) touch_line(ring_ + ((position + layout::kCacheLine * i) & mask_));
        if (commit != layout::commit_word(position)) return RecordCheck::not_ready;
        out.position = position;
        out.length = layout::get_field(h->length);
        out.type = layout::get_field(h->type);
        out.flags = layout::get_field(h->flags);
        out.id = layout::get_field(h->id);
        out.timestamp_ns = layout::get_field(h->timestamp_ns);
        if (out.type == uint16_t(layout::RecordType::padding)) {
            out.size = cap_ - offset;
            return out.length == out.size - sizeof(layout::RecordHeader) ? RecordCheck::ready : RecordCheck::corrupt;
        }
        if (out.type != uint16_t(layout::RecordType::data) && out.type != uint16_t(layout::RecordType::skip))
            return RecordCheck::corrupt;
        const uint64_t limit = max_message_ + layout::record_allowance(out.flags);
        if (out.length > limit) return RecordCheck::corrupt;
        out.size = layout::record_size(out.length);
        if (offset + out.size > cap_) return RecordCheck::corrupt;
        return RecordCheck::ready;
    }

    // Copies a payload that producers may be overwriting (a seqlock read): the caller validates
    // against the tail afterwards and discards the copy if it was lapped. Not instrumented by
    // TSan, which cannot know about that validation.
#if defined(__SANITIZE_THREAD__)
    __attribute__((no_sanitize_thread, optimize("no-tree-loop-distribute-patterns"))) static void copy_unstable(
        std::byte* dst, const std::byte* src, std::size_t n) noexcept {
        for (std::size_t i = 0; i < n; ++i) dst[i] = src[i];  // not turned into an intercepted memcpy
    }
#else
    static void copy_unstable(std::byte* dst, const std::byte* src, std::size_t n) noexcept { std::memcpy(dst, src, n); }
#endif

    // After a claim [start, end) whose next message id is `next_id`: if `end` is the first
    // record boundary of its index block, publish it there (a two-word seqlock).
    void note_boundary(uint64_t start, uint64_t end, uint64_t next_id) const noexcept {
        // `end` is the first boundary of block end/block exactly when the claim began in an
        // earlier block (a claim that begins on a block start was indexed by its predecessor).
        // Shifts, not divisions: on every claim, and a 64-bit division costs tens of cycles.
        if ((start >> block_shift_) == (end >> block_shift_)) return;
        auto& e = seg_->index_entry(uint32_t((end >> block_shift_) & (seg_->index_entries() - 1)));
        e.tagged.store(0, std::memory_order_relaxed);
        // SYNC: release fence orders the zero before the id store; pairs with the acquire
        // fence in read_boundary(), which then sees 0 or a mismatching tag.
        std::atomic_thread_fence(std::memory_order_release);
        e.first_id.store(next_id, std::memory_order_relaxed);
        // SYNC: pairs with the acquire load of `tagged` in read_boundary().
        e.tagged.store(end + 1, std::memory_order_release);
    }

    [[nodiscard]] std::optional<Boundary> read_boundary(uint32_t i) const noexcept {
        auto& e = seg_->index_entry(i);
        const uint64_t t1 = e.tagged.load(std::memory_order_acquire);  // SYNC: pairs with note_boundary's release store
        const uint64_t id = e.first_id.load(std::memory_order_relaxed);  // relaxed: validated by the re-read below
        std::atomic_thread_fence(std::memory_order_acquire);           // SYNC: pairs with note_boundary's release fence
        const uint64_t t2 = e.tagged.load(std::memory_order_relaxed);
        if (t1 == 0 || t1 != t2) return std::nullopt;
        const uint64_t pos = t1 - 1;
        if (pos % layout::kRecordAlignment != 0) return std::nullopt;
        return Boundary{pos, id};
    }

    // The oldest indexed boundary at or above `floor` and at or below the tail, checked against the
    // tail afterwards so the bytes behind it were still whole when it was chosen.
    [[nodiscard]] std::optional<Boundary> oldest_boundary(uint64_t floor) const noexcept;
    // The indexed boundary with the highest id not above `id`, at or above `floor`.
    [[nodiscard]] std::optional<Boundary> boundary_before(uint64_t floor, uint64_t id) const noexcept;

    // Where a new reader starts. `floor` is the lowest position it may use (a gating reader
    // joins at most 3/4 of a ring back, see docs/architecture.md). For StartFrom::id the result
    // may start later than asked if `id` is no longer retained; `lost` then counts the gap.
    struct Start {
        uint64_t position;
        uint64_t id;          // id of the first message at `position`
        uint64_t lost;        // asked-for messages that are no longer retained
        uint64_t deliver_from;  // messages below this id are stepped over, not delivered
    };
    [[nodiscard]] Result<Start> resolve_start(StartFrom from, uint64_t id, bool gating) const noexcept;

private:
    // Loads the line at `p` into this core's cache. A plain load, not a prefetch, which the
    // processor may drop; in asm, so that no sanitizer takes it for a racy read (nothing is read
    // from it) and no compiler removes it.
    static void touch_line(const std::byte* p) noexcept {
#if defined(__x86_64__)
        uint64_t ignored;
        asm volatile("movq %1, %0" : "=r"(ignored) : "m"(*reinterpret_cast<const uint64_t*>(p)));
#else
        __builtin_prefetch(p, 0, 3);
#endif
    }
#if defined(__x86_64__) && !defined(__SANITIZE_THREAD__)
    // An aligned 16-byte MOVDQA (legacy or VEX.128 encoded) is atomic on every x86-64 processor
    // that has AVX (Intel SDM vol. 3A 9.1.1, AMD APM vol. 2 7.3.2); without AVX the architecture
    // promises 8 bytes only. The legacy SSE2 form needs no AVX code generation, so the store is
    // inlined into the claim rather than called.
    static inline const bool kAtomicVectorStore = __builtin_cpu_supports("avx");
    static void store16(uint64_t* word, uint64_t low, uint64_t high) noexcept {
        const __m128i v = _mm_set_epi64x(int64_t(high), int64_t(low));
        // SYNC: a release store (x86 keeps stores in program order; the asm's memory clobber keeps
        // the compiler from moving earlier writes after it): pairs with the acquire loads of the
        // tail in read_tail() and tail_position(), as the CAS's release half does.
        asm volatile("movdqa %1, %0" : "=m"(*reinterpret_cast<__m128i*>(word)) : "x"(v) : "memory");
    }
#endif
    const Segment* seg_;
    std::byte* ring_;
    uint64_t mask_;
    uint64_t cap_;
    uint64_t max_message_;
    uint32_t block_shift_;  // log2 of the index block: capacity and index entries are powers of two
};

// The most bytes one claim takes, padding included, but for an early wrap's: a gate refresh lets
// claims run at most a quarter ring past the tail, and a record is at most an eighth. An early wrap
// (PublisherOptions::reuse_space) claims padding alone, to the ring's end, and only where that is
// longer than this: so shmbusd tells the two apart by length when it seals one (recovery.cpp).
[[nodiscard]] constexpr uint64_t longest_claim(uint64_t capacity) noexcept { return capacity / 4 + layout::kRecordAlignment; }

// The lowest position a new gating reader may take: producers may claim up to a quarter ring past
// the tail they saw at their last gate refresh without looking again (PublisherCore).
[[nodiscard]] inline uint64_t gating_join_floor(uint64_t tail, uint64_t capacity) noexcept {
    const uint64_t back = capacity - capacity / 4;
    return tail > back ? tail - back : 0;
}

}  // namespace shmbus::detail
