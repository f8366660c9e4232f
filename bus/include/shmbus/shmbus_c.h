/* The C API of shmbus: opaque handles over the C++ library, for C programs and for bindings to
 * other languages (the Python module is built on it). libshmbus_c.so.1; docs/c-api.md.
 *
 *   shmbus_client* bus;
 *   if (shmbus_connect(NULL, &bus) != SHMBUS_OK) { fprintf(stderr, "%s\n", shmbus_last_error()); return 1; }
 *   shmbus_publisher* pub;
 *   shmbus_publisher_open(bus, "prices", NULL, &pub);
 *   shmbus_publish(pub, "EURUSD 1.0841", 13);
 *
 *   shmbus_subscriber* sub;
 *   shmbus_subscribe(bus, "prices", NULL, &sub);
 *   shmbus_message m;
 *   while (shmbus_next(sub, 1000000000, &m) == SHMBUS_OK) fwrite(m.payload, 1, m.size, stdout);
 *
 * Every call returns an int status: SHMBUS_OK (0), a data-path status (1..99: nothing ready, full,
 * too large...) or a setup error (SHMBUS_ERROR_BASE + the C++ Errc). The text of the last
 * failure on the calling thread is shmbus_last_error(). No call aborts, prints or throws.
 *
 * Threads: a client may be shared by threads; a publisher, subscriber or wait set is used by one
 * thread at a time (docs/threads.md). A message copied out of a handler (the struct, by value)
 * can be acked later, from any thread, as long as calls on its subscriber do not overlap.
 *
 * ABI: the functions and structs here never change meaning or layout within soname 1. Options
 * structs begin with their own size (set it with the *_INIT macros), so that later versions can
 * add fields at the end and still read what older programs pass. */
#ifndef SHMBUS_SHMBUS_C_H
#define SHMBUS_SHMBUS_C_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define SHMBUS_C_API_VERSION 1

/* Statuses. */
enum {
    SHMBUS_OK = 0,
    SHMBUS_EMPTY = 1,          /* poll: nothing ready; receive/next/wait: nothing before the deadline */
    SHMBUS_WOULD_BLOCK = 2,    /* on-full `fail`: the ring is full of unacked data */
    SHMBUS_TIMED_OUT = 3,      /* on-full `block`: still full at the deadline */
    SHMBUS_TOO_LARGE = 4,      /* payload (with headers) above the topic's max_message */
    SHMBUS_ABORTED = 5,        /* no open loan to commit */
    SHMBUS_REVOKED = 6,        /* the loan stayed open past the topic's unblock-timeout */
    SHMBUS_CORRUPT = 7,        /* the topic's shared state failed a check */
    SHMBUS_DELETED = 8,        /* the topic was deleted (`topic delete --force`) */
    SHMBUS_BAD_HEADERS = 9,    /* a header breaks the rules (docs/headers.md) */
    SHMBUS_DUPLICATE = 10,     /* a named producer's sequence not above the last committed */
    SHMBUS_NO_PRODUCER = 11,   /* publish_sequence on an anonymous publisher */
    SHMBUS_NOT_DELIVERED = 12, /* ack: not a message this subscriber delivered */
    SHMBUS_STALE = 13,         /* ack: delivered before a seek, or past its visibility timeout */
    SHMBUS_NOT_GROUP = 14,     /* nack and reject need a group member */
    SHMBUS_BAD_KEY = 15,       /* a message key longer than SHMBUS_MAX_KEY bytes */
    SHMBUS_ERROR_BASE = 100,   /* + shmbus::Errc: SHMBUS_ERROR_BASE + 4 is topic_not_found... */
    SHMBUS_INVALID_NAME = 101,
    SHMBUS_INVALID_ARGUMENT = 102,
    SHMBUS_MESSAGE_TOO_LARGE = 103,
    SHMBUS_TOPIC_NOT_FOUND = 104,
    SHMBUS_TOPIC_EXISTS = 105,
    SHMBUS_NO_SPACE = 109,
    SHMBUS_IO_ERROR = 110,
    SHMBUS_DAEMON_NOT_RUNNING = 111,
    SHMBUS_PROTOCOL_ERROR = 113,
    SHMBUS_PERMISSION_DENIED = 114,
    SHMBUS_NO_FREE_SLOT = 115,
    SHMBUS_BUSY = 116,
    SHMBUS_DISCONNECTED = 117,
    SHMBUS_ERROR_TIMED_OUT = 118,
    SHMBUS_NO_RESPONDER = 119,
    SHMBUS_RESPONDER_DIED = 120,
    SHMBUS_RESPONDER_ERROR = 121
};

/* What went wrong in the last call that failed on this thread ("" if none did). Valid until the
 * next failing call on the thread. */
const char* shmbus_last_error(void);
/* A status's name: "ok", "empty", "would_block", "topic_not_found"... */
const char* shmbus_status_name(int status);
/* The library's version, "0.1.0". */
const char* shmbus_version(void);

typedef struct shmbus_client shmbus_client;
typedef struct shmbus_publisher shmbus_publisher;
typedef struct shmbus_subscriber shmbus_subscriber;
typedef struct shmbus_waitset shmbus_waitset;

/* ---- Client ---- */

/* `dir`: the bus directory; NULL for the default ($SHMBUS_DIR, else the per-user one). */
int shmbus_connect(const char* dir, shmbus_client** out);
/* Publishers and subscribers opened through it stay usable after it is closed. NULL is fine. */
void shmbus_client_close(shmbus_client* client);

typedef struct shmbus_topic_config {
    size_t struct_size;    /* sizeof(shmbus_topic_config) */
    uint64_t capacity;     /* ring bytes; 0: the bus default */
    uint32_t max_message;  /* 0: the default for the capacity */
    int on_full;           /* 0 block, 1 fail, 2 overwrite */
} shmbus_topic_config;
#define SHMBUS_TOPIC_CONFIG_INIT {sizeof(shmbus_topic_config), 0, 0, 0}

int shmbus_create_topic(shmbus_client* client, const char* topic, const shmbus_topic_config* config);
int shmbus_delete_topic(shmbus_client* client, const char* topic, int force);

/* ---- Publishing ---- */

typedef struct shmbus_header {
    const char* key;
    size_t key_size;
    const char* value;
    size_t value_size;
} shmbus_header;

typedef struct shmbus_publisher_options {
    size_t struct_size;        /* sizeof(shmbus_publisher_options) */
    const char* producer;      /* a named (idempotent) producer; NULL: anonymous */
    int64_t block_timeout_ns;  /* how long a publish waits on a full `block` topic; <= 0: 30 s */
    /* 1: messages of 256 KiB and more cycle through the ring's first 4 MiB, still cached, once every
     * reader has read everything; later subscriptions then find less history
     * (shmbus::PublisherOptions::reuse_space). An older caller's struct without it: 0. */
    int reuse_space;
} shmbus_publisher_options;
#define SHMBUS_PUBLISHER_OPTIONS_INIT {sizeof(shmbus_publisher_options), NULL, 0, 0}

int shmbus_publisher_open(shmbus_client* client, const char* topic, const shmbus_publisher_options* options,
                          shmbus_publisher** out);
void shmbus_publisher_close(shmbus_publisher* publisher);
int shmbus_publish(shmbus_publisher* publisher, const void* data, size_t size);
int shmbus_publish_headers(shmbus_publisher* publisher, const void* data, size_t size, const shmbus_header* headers,
                           size_t header_count);
/* What a message carries besides its payload (shmbus::MessageOptions): headers, a key (any bytes,
 * at most SHMBUS_MAX_KEY; SHMBUS_BAD_KEY beyond), a time to live (0: the topic's default), and a
 * delivery time for consumer groups (delay_ns after publish, or deliver_at_ns CLOCK_REALTIME, which
 * wins when set). */
#define SHMBUS_MAX_KEY 256
typedef struct shmbus_message_options {
    size_t struct_size;            /* sizeof(shmbus_message_options) */
    const shmbus_header* headers;
    size_t header_count;
    const void* key;
    size_t key_size;               /* 0: no key */
    int64_t ttl_ns;
    int64_t delay_ns;
    uint64_t deliver_at_ns;
} shmbus_message_options;
#define SHMBUS_MESSAGE_OPTIONS_INIT {sizeof(shmbus_message_options), NULL, 0, NULL, 0, 0, 0, 0}
int shmbus_publish_message(shmbus_publisher* publisher, const void* data, size_t size, const shmbus_message_options* options);
/* A named producer's publish with the sequence the caller chose. */
int shmbus_publish_sequence(shmbus_publisher* publisher, uint64_t sequence, const void* data, size_t size,
                            const shmbus_header* headers, size_t header_count);
/* Publishes `count` payloads in order as consecutive messages, batched (one claim for as many as
 * fit in an eighth of the ring): *published (may be NULL) says how many were published; the
 * status says why it stopped, as shmbus_publish would for the first one not published. */
typedef struct shmbus_buffer {
    const void* data;
    size_t size;
} shmbus_buffer;
int shmbus_publish_batch(shmbus_publisher* publisher, const shmbus_buffer* payloads, size_t count, size_t* published);
/* Zero copy: claims `size` bytes in the ring (*data points at them) for one message, published by
 * shmbus_loan_commit or given back by shmbus_loan_abandon. One open loan per publisher; closing
 * the publisher abandons it. */
int shmbus_loan(shmbus_publisher* publisher, size_t size, void** data);
int shmbus_loan_commit(shmbus_publisher* publisher);
void shmbus_loan_abandon(shmbus_publisher* publisher);
uint64_t shmbus_publisher_last_id(const shmbus_publisher* publisher);
uint64_t shmbus_publisher_last_sequence(const shmbus_publisher* publisher);

/* ---- Subscribing ---- */

/* SHMBUS_START_LATEST_PER_KEY: a compacted topic's latest message of every key, then the stream. */
enum { SHMBUS_START_LATEST = 0, SHMBUS_START_EARLIEST = 1, SHMBUS_START_ID = 2, SHMBUS_START_LATEST_PER_KEY = 3 };

typedef struct shmbus_subscribe_options {
    size_t struct_size;        /* sizeof(shmbus_subscribe_options) */
    const char* durable;       /* a durable subscription's name; NULL: ephemeral */
    const char* group;         /* a consumer group's name; NULL: none */
    int start;                 /* SHMBUS_START_*: where a new subscription begins */
    uint64_t start_id;         /* with SHMBUS_START_ID */
    int auto_ack;              /* 1 (default): ack each message once the next is asked for */
    int busy_spin;             /* 1: receive() spins instead of sleeping */
    /* In a dense stream, how long a receiving subscriber may wait after catching up before it polls
     * again (shmbus::SubscribeOptions::stream_backoff): 0: the default, 32 us; < 0: never wait.
     * An older caller's struct without it: 0. */
    int64_t stream_backoff_ns;
} shmbus_subscribe_options;
#define SHMBUS_SUBSCRIBE_OPTIONS_INIT {sizeof(shmbus_subscribe_options), NULL, NULL, SHMBUS_START_LATEST, 0, 1, 0, 0}

/* A received message. Its pointers (payload, producer, headers) are valid until the handler
 * returns, or for shmbus_next until the next call on the subscriber. The struct may be copied by
 * value and acked later with the copy. */
typedef struct shmbus_message {
    uint64_t id;
    uint64_t timestamp_ns;   /* the publisher's CLOCK_REALTIME at claim */
    uint64_t lost_before;    /* messages lost to an overrun just before this one */
    uint32_t attempt;        /* group members: which delivery this is */
    uint32_t header_count;
    const void* payload;
    size_t size;
    const char* producer;    /* a named producer's name (not NUL-terminated), else size 0 */
    size_t producer_size;
    uint64_t sequence;       /* a named producer's number for the message, else 0 */
    uint64_t reserved_[24];  /* the library's: what ack, nack and the header calls need */
} shmbus_message;

typedef void (*shmbus_handler)(void* user, const shmbus_message* message);

int shmbus_subscribe(shmbus_client* client, const char* topic, const shmbus_subscribe_options* options,
                     shmbus_subscriber** out);
void shmbus_subscriber_close(shmbus_subscriber* subscriber);
/* Hands up to `max` ready messages to `handler` without waiting; *delivered (may be NULL) says
 * how many. SHMBUS_OK if any, SHMBUS_EMPTY if none, or SHMBUS_CORRUPT / SHMBUS_DELETED. With
 * auto_ack, each message is acked once the handler returns. */
int shmbus_poll(shmbus_subscriber* subscriber, shmbus_handler handler, void* user, size_t max, uint32_t* delivered);
/* Like shmbus_poll, but waits up to `timeout_ns` for the first message. */
int shmbus_receive(shmbus_subscriber* subscriber, shmbus_handler handler, void* user, int64_t timeout_ns, size_t max,
                   uint32_t* delivered);
/* One message into *out, borrowed: valid until the next call on this subscriber (which, with
 * auto_ack, acks it). Waits up to `timeout_ns` (0: not at all). */
int shmbus_next(shmbus_subscriber* subscriber, int64_t timeout_ns, shmbus_message* out);
int shmbus_ack(shmbus_subscriber* subscriber, const shmbus_message* message);
/* Group members: deliver again after the group's backoff (delay_ns 0) or after `delay_ns`. */
int shmbus_nack(shmbus_subscriber* subscriber, const shmbus_message* message, int64_t delay_ns);
/* Group members: to the dead-letter topic now, with `reason` (may be NULL). */
int shmbus_reject(shmbus_subscriber* subscriber, const shmbus_message* message, const char* reason);
uint64_t shmbus_subscriber_next_id(const shmbus_subscriber* subscriber);
uint64_t shmbus_subscriber_lost(const shmbus_subscriber* subscriber);
const char* shmbus_subscriber_topic(const shmbus_subscriber* subscriber);

/* The message's `index`th header (0 <= index < header_count). */
int shmbus_message_header(const shmbus_message* message, uint32_t index, shmbus_header* out);
/* The first header named `key`: SHMBUS_OK, or SHMBUS_EMPTY if it has none of that name. */
int shmbus_message_header_get(const shmbus_message* message, const char* key, shmbus_header* out);
/* The message's key: SHMBUS_OK with *key and *size, or SHMBUS_EMPTY if it has none. */
int shmbus_message_key(const shmbus_message* message, const void** key, size_t* size);
/* CLOCK_REALTIME nanoseconds after which the message is expired, and before which a consumer
 * group does not deliver it; 0: never expires, due at once. */
uint64_t shmbus_message_expires_at(const shmbus_message* message);
uint64_t shmbus_message_deliver_at(const shmbus_message* message);

/* ---- Waiting on many subscriptions (shmbus/wait_set.h) ---- */

int shmbus_waitset_new(shmbus_waitset** out);
/* Its subscribers stay open. */
void shmbus_waitset_free(shmbus_waitset* set);
int shmbus_waitset_add(shmbus_waitset* set, shmbus_subscriber* subscriber);
int shmbus_waitset_remove(shmbus_waitset* set, shmbus_subscriber* subscriber);
/* Waits up to `timeout_ns` (0: not at all) until a subscription may have something; stores up to
 * `capacity` of them in `ready` and their number in *count. SHMBUS_OK if any, SHMBUS_EMPTY if none. */
int shmbus_waitset_wait(shmbus_waitset* set, int64_t timeout_ns, shmbus_subscriber** ready, size_t capacity,
                        size_t* count);
/* A descriptor readable while a subscription may have something: call shmbus_waitset_wait(set,
 * 0, ...) when it is. Owned by the set. */
int shmbus_waitset_fd(shmbus_waitset* set, int* fd);

#ifdef __cplusplus
}
#endif

#endif /* SHMBUS_SHMBUS_C_H */
