/* The C API from C: every call of shmbus_c.h against a running shmbusd on the bus directory given
 * as argv[1] (tests/process/c_api_test.cpp starts it). Prints each failed check and exits 1 if
 * any failed. */
#include <poll.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shmbus/shmbus_c.h"

static int failures = 0;

#define CHECK(cond)                                                                        \
    do {                                                                                   \
        if (!(cond)) {                                                                     \
            fprintf(stderr, "%s:%d: CHECK(%s) failed; last error: %s\n", __FILE__, __LINE__, \
                    #cond, shmbus_last_error());                                           \
            ++failures;                                                                    \
        }                                                                                  \
    } while (0)
#define CHECK_STATUS(call, want)                                                                       \
    do {                                                                                               \
        int got_ = (call);                                                                             \
        if (got_ != (want)) {                                                                          \
            fprintf(stderr, "%s:%d: %s returned %s (%d), want %s; last error: %s\n", __FILE__, __LINE__, \
                    #call, shmbus_status_name(got_), got_, shmbus_status_name(want), shmbus_last_error()); \
            ++failures;                                                                                \
        }                                                                                              \
    } while (0)

static const int64_t kSecond = 1000000000;

struct collected {
    int count;
    uint64_t ids[16];
    char payloads[16][64];
    size_t sizes[16];
    char header[64];
};

static void collect(void* user, const shmbus_message* m) {
    struct collected* c = (struct collected*)user;
    if (c->count >= 16) return;
    c->ids[c->count] = m->id;
    c->sizes[c->count] = m->size < 64 ? m->size : 64;
    memcpy(c->payloads[c->count], m->payload, c->sizes[c->count]);
    shmbus_header h = {NULL, 0, NULL, 0};
    if (shmbus_message_header_get(m, "trace", &h) == SHMBUS_OK && h.value_size < sizeof c->header) {
        memcpy(c->header, h.value, h.value_size);
        c->header[h.value_size] = 0;
    }
    ++c->count;
}

static void errors_are_statuses_with_text(const char* dir) {
    shmbus_client* none = NULL;
    char missing[512];
    snprintf(missing, sizeof missing, "%s/no-such-bus", dir);
    CHECK_STATUS(shmbus_connect(missing, &none), SHMBUS_DAEMON_NOT_RUNNING);
    CHECK(none == NULL);
    CHECK(strlen(shmbus_last_error()) > 0);
    CHECK(strcmp(shmbus_status_name(SHMBUS_TOPIC_NOT_FOUND), "topic_not_found") == 0);
    CHECK(strcmp(shmbus_status_name(SHMBUS_EMPTY), "empty") == 0);
    CHECK_STATUS(shmbus_connect(dir, NULL), SHMBUS_INVALID_ARGUMENT);
    CHECK_STATUS(shmbus_publish(NULL, "x", 1), SHMBUS_INVALID_ARGUMENT);
    CHECK(strstr(shmbus_last_error(), "publisher") != NULL);
}

static void publish_and_receive(shmbus_client* bus) {
    shmbus_topic_config config = SHMBUS_TOPIC_CONFIG_INIT;
    config.capacity = 1 << 16;
    config.max_message = 1024;
    CHECK_STATUS(shmbus_create_topic(bus, "c.basic", &config), SHMBUS_OK);
    CHECK_STATUS(shmbus_create_topic(bus, "bad name!", &config), SHMBUS_INVALID_NAME);

    shmbus_subscriber* sub = NULL;
    CHECK_STATUS(shmbus_subscribe(bus, "c.basic", NULL, &sub), SHMBUS_OK);
    shmbus_publisher* pub = NULL;
    CHECK_STATUS(shmbus_publisher_open(bus, "c.basic", NULL, &pub), SHMBUS_OK);
    if (!sub || !pub) return;

    CHECK_STATUS(shmbus_publish(pub, "one", 3), SHMBUS_OK);
    const shmbus_header headers[] = {{"trace", 5, "abc", 3}};
    CHECK_STATUS(shmbus_publish_headers(pub, "two", 3, headers, 1), SHMBUS_OK);
    const shmbus_header bad[] = {{"bad key!", 8, "v", 1}};
    CHECK_STATUS(shmbus_publish_headers(pub, "x", 1, bad, 1), SHMBUS_BAD_HEADERS);
    char big[2048] = {0};
    CHECK_STATUS(shmbus_publish(pub, big, sizeof big), SHMBUS_TOO_LARGE);

    struct collected got;
    memset(&got, 0, sizeof got);
    uint32_t delivered = 0;
    CHECK_STATUS(shmbus_receive(sub, collect, &got, kSecond, 16, &delivered), SHMBUS_OK);
    CHECK(delivered == 2 && got.count == 2);
    CHECK(got.sizes[0] == 3 && memcmp(got.payloads[0], "one", 3) == 0);
    CHECK(got.sizes[1] == 3 && memcmp(got.payloads[1], "two", 3) == 0);
    CHECK(got.ids[1] == got.ids[0] + 1);
    CHECK(strcmp(got.header, "abc") == 0);
    CHECK_STATUS(shmbus_poll(sub, collect, &got, 16, &delivered), SHMBUS_EMPTY);
    CHECK(delivered == 0);

    /* Any bytes, NULs and newlines included; a borrowed view until the next call. */
    const char binary[] = {'a', 0, '\n', (char)0xff, 'z'};
    CHECK_STATUS(shmbus_publish(pub, binary, sizeof binary), SHMBUS_OK);
    shmbus_message m;
    CHECK_STATUS(shmbus_next(sub, kSecond, &m), SHMBUS_OK);
    CHECK(m.size == sizeof binary && memcmp(m.payload, binary, sizeof binary) == 0);
    CHECK(m.header_count == 0 && m.attempt == 1);
    CHECK_STATUS(shmbus_next(sub, 0, &m), SHMBUS_EMPTY);
    CHECK(strcmp(shmbus_subscriber_topic(sub), "c.basic") == 0);

    /* A key (any bytes) and a time to live; a key too long is refused. */
    shmbus_message_options keyed = SHMBUS_MESSAGE_OPTIONS_INIT;
    const char key[] = {'k', 0, '1'};
    keyed.key = key;
    keyed.key_size = sizeof key;
    keyed.ttl_ns = 60 * kSecond;
    keyed.headers = headers;
    keyed.header_count = 1;
    CHECK_STATUS(shmbus_publish_message(pub, "keyed", 5, &keyed), SHMBUS_OK);
    char long_key[SHMBUS_MAX_KEY + 1];
    memset(long_key, 'k', sizeof long_key);
    keyed.key = long_key;
    keyed.key_size = sizeof long_key;
    CHECK_STATUS(shmbus_publish_message(pub, "x", 1, &keyed), SHMBUS_BAD_KEY);
    CHECK_STATUS(shmbus_next(sub, kSecond, &m), SHMBUS_OK);
    const void* got_key = NULL;
    size_t got_key_size = 0;
    CHECK_STATUS(shmbus_message_key(&m, &got_key, &got_key_size), SHMBUS_OK);
    CHECK(got_key_size == sizeof key && memcmp(got_key, key, sizeof key) == 0);
    CHECK(m.size == 5 && memcmp(m.payload, "keyed", 5) == 0 && m.header_count == 1);
    CHECK(shmbus_message_expires_at(&m) > m.timestamp_ns && shmbus_message_deliver_at(&m) == 0);
    CHECK_STATUS(shmbus_publish(pub, "plain", 5), SHMBUS_OK);
    CHECK_STATUS(shmbus_next(sub, kSecond, &m), SHMBUS_OK);
    CHECK_STATUS(shmbus_message_key(&m, &got_key, &got_key_size), SHMBUS_EMPTY);
    CHECK(shmbus_message_expires_at(&m) == 0);

    /* Zero copy. */
    void* room = NULL;
    CHECK_STATUS(shmbus_loan(pub, 5, &room), SHMBUS_OK);
    void* second = NULL;
    CHECK_STATUS(shmbus_loan(pub, 5, &second), SHMBUS_INVALID_ARGUMENT);
    if (room) memcpy(room, "loans", 5);
    CHECK_STATUS(shmbus_loan_commit(pub), SHMBUS_OK);
    CHECK_STATUS(shmbus_loan_commit(pub), SHMBUS_ABORTED);
    CHECK_STATUS(shmbus_next(sub, kSecond, &m), SHMBUS_OK);
    CHECK(m.size == 5 && memcmp(m.payload, "loans", 5) == 0);
    CHECK(m.id == shmbus_publisher_last_id(pub));
    CHECK_STATUS(shmbus_loan(pub, 4, &room), SHMBUS_OK);
    shmbus_loan_abandon(pub);
    CHECK_STATUS(shmbus_publish(pub, "after", 5), SHMBUS_OK);
    CHECK_STATUS(shmbus_next(sub, kSecond, &m), SHMBUS_OK);
    CHECK(m.size == 5 && memcmp(m.payload, "after", 5) == 0);

    /* Batches: in order, consecutive ids; a payload too large stops the batch there. */
    const shmbus_buffer batch[] = {{"b1", 2}, {"b2", 2}, {big, sizeof big}, {"b4", 2}};
    size_t published = 0;
    CHECK_STATUS(shmbus_publish_batch(pub, batch, 4, &published), SHMBUS_TOO_LARGE);
    CHECK(published == 2);
    memset(&got, 0, sizeof got);
    CHECK_STATUS(shmbus_receive(sub, collect, &got, kSecond, 16, &delivered), SHMBUS_OK);
    CHECK(got.count == 2 && memcmp(got.payloads[1], "b2", 2) == 0 && got.ids[1] == got.ids[0] + 1);

    shmbus_publisher_close(pub);
    shmbus_subscriber_close(sub);
    CHECK_STATUS(shmbus_delete_topic(bus, "c.basic", 0), SHMBUS_OK);
}

static void durable_resumes_after_what_it_acked(shmbus_client* bus) {
    shmbus_publisher* pub = NULL;
    CHECK_STATUS(shmbus_publisher_open(bus, "c.durable", NULL, &pub), SHMBUS_OK);
    shmbus_subscribe_options o = SHMBUS_SUBSCRIBE_OPTIONS_INIT;
    o.durable = "keeper";
    o.start = SHMBUS_START_EARLIEST;
    shmbus_subscriber* sub = NULL;
    CHECK_STATUS(shmbus_subscribe(bus, "c.durable", &o, &sub), SHMBUS_OK);
    if (!pub || !sub) return;
    for (int i = 0; i < 3; ++i) CHECK_STATUS(shmbus_publish(pub, &i, sizeof i), SHMBUS_OK);
    shmbus_message m;
    CHECK_STATUS(shmbus_next(sub, kSecond, &m), SHMBUS_OK);
    const uint64_t first = m.id;
    CHECK_STATUS(shmbus_next(sub, kSecond, &m), SHMBUS_OK); /* acks the first */
    shmbus_subscriber_close(sub);                          /* acks the second */
    CHECK_STATUS(shmbus_subscribe(bus, "c.durable", &o, &sub), SHMBUS_OK);
    CHECK_STATUS(shmbus_next(sub, kSecond, &m), SHMBUS_OK);
    CHECK(m.id == first + 2);

    /* Manual acks: nothing is acked until asked. */
    shmbus_subscriber_close(sub);
    o.durable = "manual";
    o.auto_ack = 0;
    CHECK_STATUS(shmbus_subscribe(bus, "c.durable", &o, &sub), SHMBUS_OK);
    CHECK_STATUS(shmbus_next(sub, kSecond, &m), SHMBUS_OK);
    shmbus_message kept = m; /* copied by value, acked later */
    CHECK_STATUS(shmbus_next(sub, kSecond, &m), SHMBUS_OK);
    CHECK_STATUS(shmbus_ack(sub, &kept), SHMBUS_OK);
    shmbus_subscriber_close(sub);
    CHECK_STATUS(shmbus_subscribe(bus, "c.durable", &o, &sub), SHMBUS_OK);
    CHECK_STATUS(shmbus_next(sub, kSecond, &m), SHMBUS_OK);
    CHECK(m.id == kept.id + 1);
    CHECK_STATUS(shmbus_nack(sub, &m, 0), SHMBUS_NOT_GROUP);
    shmbus_subscriber_close(sub);
    shmbus_publisher_close(pub);
}

static void groups_retry_and_dead_letter(shmbus_client* bus) {
    shmbus_publisher* pub = NULL;
    CHECK_STATUS(shmbus_publisher_open(bus, "c.jobs", NULL, &pub), SHMBUS_OK);
    shmbus_subscribe_options o = SHMBUS_SUBSCRIBE_OPTIONS_INIT;
    o.group = "workers";
    o.auto_ack = 0;
    shmbus_subscriber* worker = NULL;
    CHECK_STATUS(shmbus_subscribe(bus, "c.jobs", &o, &worker), SHMBUS_OK);
    shmbus_subscribe_options d = SHMBUS_SUBSCRIBE_OPTIONS_INIT;
    d.start = SHMBUS_START_EARLIEST;
    shmbus_subscriber* dlq = NULL;
    CHECK_STATUS(shmbus_subscribe(bus, "c.jobs.dlq", &d, &dlq), SHMBUS_OK);
    if (!pub || !worker || !dlq) return;
    CHECK_STATUS(shmbus_publish(pub, "job", 3), SHMBUS_OK);
    shmbus_message m;
    CHECK_STATUS(shmbus_next(worker, kSecond, &m), SHMBUS_OK);
    CHECK(m.attempt == 1);
    CHECK_STATUS(shmbus_nack(worker, &m, 1000000), SHMBUS_OK); /* again after 1 ms */
    CHECK_STATUS(shmbus_next(worker, 5 * kSecond, &m), SHMBUS_OK);
    CHECK(m.attempt == 2 && m.size == 3 && memcmp(m.payload, "job", 3) == 0);
    CHECK_STATUS(shmbus_reject(worker, &m, "cannot parse"), SHMBUS_OK);
    CHECK_STATUS(shmbus_ack(worker, &m), SHMBUS_STALE);
    CHECK_STATUS(shmbus_next(dlq, 5 * kSecond, &m), SHMBUS_OK);
    shmbus_header reason;
    CHECK_STATUS(shmbus_message_header_get(&m, "shmbus-reason", &reason), SHMBUS_OK);
    CHECK(reason.value_size == 12 && memcmp(reason.value, "cannot parse", 12) == 0);
    CHECK(m.header_count >= 4);
    shmbus_header first;
    CHECK_STATUS(shmbus_message_header(&m, 0, &first), SHMBUS_OK);
    CHECK_STATUS(shmbus_message_header(&m, 1000, &first), SHMBUS_INVALID_ARGUMENT);
    shmbus_subscriber_close(worker);
    shmbus_subscriber_close(dlq);
    shmbus_publisher_close(pub);
}

static void named_producers_refuse_duplicates(shmbus_client* bus) {
    shmbus_publisher_options o = SHMBUS_PUBLISHER_OPTIONS_INIT;
    o.producer = "c-writer";
    shmbus_publisher* pub = NULL;
    CHECK_STATUS(shmbus_publisher_open(bus, "c.named", &o, &pub), SHMBUS_OK);
    if (!pub) return;
    CHECK_STATUS(shmbus_publish_sequence(pub, 10, "a", 1, NULL, 0), SHMBUS_OK);
    CHECK_STATUS(shmbus_publish_sequence(pub, 10, "a", 1, NULL, 0), SHMBUS_DUPLICATE);
    CHECK(shmbus_publisher_last_sequence(pub) == 10);
    shmbus_publisher_close(pub);
    CHECK_STATUS(shmbus_publisher_open(bus, "c.named", NULL, &pub), SHMBUS_OK);
    CHECK_STATUS(shmbus_publish_sequence(pub, 1, "a", 1, NULL, 0), SHMBUS_NO_PRODUCER);
    shmbus_publisher_close(pub);
}

/* A publisher reusing warm memory: large messages arrive byte for byte; an older caller's options
 * (without reuse_space) are taken, a struct shorter than that is refused. */
static void a_publisher_reusing_space_delivers_large_messages_whole(shmbus_client* bus) {
    enum { kSize = 300 * 1024, kCount = 30 };
    shmbus_topic_config config = SHMBUS_TOPIC_CONFIG_INIT;
    config.capacity = 16u << 20;
    config.max_message = kSize;
    CHECK_STATUS(shmbus_create_topic(bus, "c.large", &config), SHMBUS_OK);
    shmbus_subscriber* sub = NULL;
    CHECK_STATUS(shmbus_subscribe(bus, "c.large", NULL, &sub), SHMBUS_OK);
    shmbus_publisher_options o = SHMBUS_PUBLISHER_OPTIONS_INIT;
    o.reuse_space = 1;
    shmbus_publisher* pub = NULL;
    CHECK_STATUS(shmbus_publisher_open(bus, "c.large", &o, &pub), SHMBUS_OK);
    unsigned char* sent = malloc(kSize);
    if (!sub || !pub || !sent) return;
    for (int n = 0; n < kCount; ++n) {
        for (size_t i = 0; i < kSize; ++i) sent[i] = (unsigned char)(i * 131 + (size_t)n * 7);
        CHECK_STATUS(shmbus_publish(pub, sent, kSize), SHMBUS_OK);
        shmbus_message m;
        CHECK_STATUS(shmbus_next(sub, kSecond, &m), SHMBUS_OK);
        CHECK(m.size == kSize && memcmp(m.payload, sent, kSize) == 0);
    }
    CHECK(shmbus_subscriber_lost(sub) == 0);
    free(sent);
    shmbus_publisher_close(pub);
    o.struct_size = offsetof(shmbus_publisher_options, reuse_space);
    CHECK_STATUS(shmbus_publisher_open(bus, "c.large", &o, &pub), SHMBUS_OK);
    shmbus_publisher_close(pub);
    o.struct_size = offsetof(shmbus_publisher_options, block_timeout_ns);
    CHECK_STATUS(shmbus_publisher_open(bus, "c.large", &o, &pub), SHMBUS_INVALID_ARGUMENT);
    shmbus_subscriber_close(sub);
}

/* Counts messages carrying 0, 1, 2... in turn; anything else is bad. */
struct in_order {
    int next;
    int bad;
};
static void take_in_order(void* user, const shmbus_message* m) {
    struct in_order* s = user;
    int got = -1;
    if (m->size == sizeof got) memcpy(&got, m->payload, sizeof got);
    if (got != s->next) ++s->bad;
    ++s->next;
}

/* stream_backoff_ns: a spinning subscriber with the pacing off (< 0), at its default (0) and at a
 * set cap each receive a burst of 2,000 messages, up to 64 a call, whole and in order; an older
 * caller's struct, which ends before the field, still subscribes; one shorter is refused. */
static void a_subscriber_paces_a_dense_stream_as_asked(shmbus_client* bus) {
    const int64_t caps[] = {-1, 0, 2000};
    for (size_t c = 0; c < sizeof caps / sizeof caps[0]; ++c) {
        shmbus_subscribe_options o = SHMBUS_SUBSCRIBE_OPTIONS_INIT;
        o.busy_spin = 1;
        o.stream_backoff_ns = caps[c];
        shmbus_subscriber* sub = NULL;
        CHECK_STATUS(shmbus_subscribe(bus, "c.paced", &o, &sub), SHMBUS_OK);
        shmbus_publisher* pub = NULL;
        CHECK_STATUS(shmbus_publisher_open(bus, "c.paced", NULL, &pub), SHMBUS_OK);
        if (!sub || !pub) return;
        for (int i = 0; i < 2000; ++i) CHECK_STATUS(shmbus_publish(pub, &i, sizeof i), SHMBUS_OK);
        struct in_order seen = {0, 0};
        while (seen.next < 2000 && seen.bad == 0) {
            uint32_t delivered = 0;
            const int st = shmbus_receive(sub, take_in_order, &seen, kSecond, 64, &delivered);
            CHECK_STATUS(st, SHMBUS_OK);
            if (st != SHMBUS_OK) break;
        }
        CHECK(seen.next == 2000 && seen.bad == 0);
        shmbus_publisher_close(pub);
        shmbus_subscriber_close(sub);
    }
    shmbus_subscribe_options o = SHMBUS_SUBSCRIBE_OPTIONS_INIT;
    o.struct_size = offsetof(shmbus_subscribe_options, stream_backoff_ns);
    shmbus_subscriber* sub = NULL;
    CHECK_STATUS(shmbus_subscribe(bus, "c.paced", &o, &sub), SHMBUS_OK);
    shmbus_subscriber_close(sub);
    o.struct_size = offsetof(shmbus_subscribe_options, busy_spin);
    CHECK_STATUS(shmbus_subscribe(bus, "c.paced", &o, &sub), SHMBUS_INVALID_ARGUMENT);
    CHECK_STATUS(shmbus_delete_topic(bus, "c.paced", 0), SHMBUS_OK);
}

static void a_wait_set_names_the_ready_subscription(shmbus_client* bus) {
    shmbus_subscriber *a = NULL, *b = NULL;
    CHECK_STATUS(shmbus_subscribe(bus, "c.wait.a", NULL, &a), SHMBUS_OK);
    CHECK_STATUS(shmbus_subscribe(bus, "c.wait.b", NULL, &b), SHMBUS_OK);
    shmbus_waitset* set = NULL;
    CHECK_STATUS(shmbus_waitset_new(&set), SHMBUS_OK);
    if (!a || !b || !set) return;
    CHECK_STATUS(shmbus_waitset_add(set, a), SHMBUS_OK);
    CHECK_STATUS(shmbus_waitset_add(set, b), SHMBUS_OK);
    int fd = -1;
    CHECK_STATUS(shmbus_waitset_fd(set, &fd), SHMBUS_OK);
    shmbus_subscriber* ready[4];
    size_t n = 0;
    /* Past a new subscription's first milliseconds (when a set looks again every millisecond),
     * nothing is ready, and the wait that finds nothing arms the descriptor. */
    poll(NULL, 0, 15);
    CHECK_STATUS(shmbus_waitset_wait(set, 0, ready, 4, &n), SHMBUS_EMPTY);
    CHECK(n == 0);
    shmbus_publisher* pub = NULL;
    CHECK_STATUS(shmbus_publisher_open(bus, "c.wait.b", NULL, &pub), SHMBUS_OK);
    CHECK_STATUS(shmbus_publish(pub, "wake", 4), SHMBUS_OK);
    struct pollfd p = {fd, POLLIN, 0};
    for (int i = 0; i < 10 && n == 0; ++i) {
        CHECK(poll(&p, 1, 5000) == 1);
        (void)shmbus_waitset_wait(set, 0, ready, 4, &n);
    }
    CHECK(n == 1 && ready[0] == b);
    shmbus_message m;
    CHECK_STATUS(shmbus_next(b, 0, &m), SHMBUS_OK);
    CHECK_STATUS(shmbus_waitset_remove(set, b), SHMBUS_OK);
    CHECK_STATUS(shmbus_waitset_remove(set, b), SHMBUS_INVALID_ARGUMENT);
    shmbus_waitset_free(set);
    shmbus_publisher_close(pub);
    shmbus_subscriber_close(a);
    shmbus_subscriber_close(b);
}

int main(int argc, char** argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s BUS_DIR\n", argv[0]);
        return 2;
    }
    errors_are_statuses_with_text(argv[1]);
    shmbus_client* bus = NULL;
    CHECK_STATUS(shmbus_connect(argv[1], &bus), SHMBUS_OK);
    if (!bus) return 1;
    CHECK(strlen(shmbus_version()) > 0);
    publish_and_receive(bus);
    durable_resumes_after_what_it_acked(bus);
    groups_retry_and_dead_letter(bus);
    named_producers_refuse_duplicates(bus);
    a_publisher_reusing_space_delivers_large_messages_whole(bus);
    a_subscriber_paces_a_dense_stream_as_asked(bus);
    a_wait_set_names_the_ready_subscription(bus);
    shmbus_client_close(bus);
    if (failures) fprintf(stderr, "%d check(s) failed\n", failures);
    else printf("all C API checks passed\n");
    return failures ? 1 : 0;
}
