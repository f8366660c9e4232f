#include <shmbus/shmbus.h>

#include <chrono>
#include <iostream>

int main() {
    auto client = shmbus::Client::connect();          // talks to shmbusd; returns an error, never throws
    if (!client) { std::cerr << client.error().message << "\n"; return 1; }

    shmbus::SubscribeOptions opts;
    opts.durable_name = "basket";                     // omit for an ephemeral subscription
    auto sub = client->subscribe("prices", opts);     // before publishing: a new one starts at the latest
    if (!sub) { std::cerr << sub.error().message << "\n"; return 1; }

    auto pub = client->publisher("prices");
    if (!pub) { std::cerr << pub.error().message << "\n"; return 1; }
    const shmbus::PublishStatus sent = pub->publish("EURUSD 1.0841");
    if (sent != shmbus::PublishStatus::ok) {          // would_block, timed_out, too_large, ...
        std::cerr << "publish: " << shmbus::to_string(sent) << "\n";
        return 1;
    }

    const shmbus::PollResult got = sub->receive([](const shmbus::Message& m) {   // m.payload points into the ring
        std::cout << m.id << ": " << m.text() << "\n";
    }, std::chrono::seconds(1));                      // acked after the handler returns
    return got.status == shmbus::ReceiveStatus::ok ? 0 : 1;
}
