// SYNC: comments name the partner of each acquire, release and fence. Every atomic operation with
// an order stronger than relaxed (and every fence) in the library and the supervisor has one
// nearby, and a comment that names a function or field that no longer exists misleads the next
// reader of the ordering argument, so every name such a comment gives must still exist in the code
// (comments excluded).
#include <gtest/gtest.h>

#include <cctype>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <string>
#include <vector>

namespace shmbus {
namespace {

namespace fs = std::filesystem;

// Memory-order words that read like identifiers but are parts of std::memory_order names.
const std::set<std::string> kVocabulary = {"seq_cst", "acq_rel"};

std::string read(const fs::path& p) {
    std::ifstream in(p);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

// The text of every SYNC: comment, continuation lines (// after the first) included.
std::vector<std::string> sync_comments(const std::string& source) {
    std::vector<std::string> out;
    std::istringstream lines(source);
    std::string line;
    std::string* open = nullptr;
    while (std::getline(lines, line)) {
        const auto slashes = line.find("//");
        const auto sync = line.find("SYNC:");
        if (slashes != std::string::npos && sync != std::string::npos && sync > slashes) {
            out.push_back(line.substr(sync + 5));
            open = &out.back();
        } else if (open != nullptr && slashes != std::string::npos && line.find_first_not_of(" \t") == slashes) {
            *open += " " + line.substr(slashes + 2);  // a comment line continuing it
        } else {
            open = nullptr;
        }
    }
    return out;
}

bool ident_start(char c) { return std::isalpha(static_cast<unsigned char>(c)) || c == '_'; }
bool ident_char(char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '_'; }

// Calls f(name, called) for each name in `text`: identifiers joined by "::", and whether "()" follows.
template <class F>
void for_each_name(const std::string& text, F&& f) {
    std::size_t i = 0;
    while (i < text.size()) {
        if (!ident_start(text[i]) || (i > 0 && ident_char(text[i - 1]))) {
            ++i;
            continue;
        }
        std::size_t end = i;
        for (;;) {
            while (end < text.size() && ident_char(text[end])) ++end;
            if (text.compare(end, 2, "::") == 0 && end + 2 < text.size() && ident_start(text[end + 2])) end += 2;
            else break;
        }
        f(text.substr(i, end - i), text.compare(end, 2, "()") == 0);
        i = end;
    }
}

// The names a comment gives: qualified names (A::b), calls (f()), and snake_case words.
std::set<std::string> named_identifiers(const std::string& comment) {
    std::set<std::string> out;
    for_each_name(comment, [&](const std::string& name, bool call) {
        const bool qualified = name.find("::") != std::string::npos;
        const bool snake = name.find('_') != std::string::npos && name.front() != '_' && name.back() != '_';
        if (!(call || qualified || snake)) return;
        std::size_t start = 0;
        for (std::size_t sep; (sep = name.find("::", start)) != std::string::npos; start = sep + 2)
            out.insert(name.substr(start, sep - start));
        out.insert(name.substr(start));
    });
    for (const auto& v : kVocabulary) out.erase(v);
    return out;
}

// Code with its comments and its string and character literals removed: a name that survives
// only in a comment or a string does not count as existing.
std::string without_comments(const std::string& src) {
    std::string out;
    out.reserve(src.size());
    std::size_t i = 0;
    auto skip_quoted = [&](char quote) {  // i at the opening quote
        for (++i; i < src.size() && src[i] != quote && src[i] != '\n'; ++i)
            if (src[i] == '\\') ++i;
        ++i;
    };
    while (i < src.size()) {
        if (src.compare(i, 2, "//") == 0) {
            i = src.find('\n', i);
            if (i == std::string::npos) break;
        } else if (src.compare(i, 2, "/*") == 0) {
            const auto end = src.find("*/", i + 2);
            i = end == std::string::npos ? src.size() : end + 2;
        } else if (src.compare(i, 2, "R\"") == 0 && (i == 0 || !std::isalnum(static_cast<unsigned char>(src[i - 1])))) {
            const auto open = src.find('(', i);
            const std::string close = ")" + src.substr(i + 2, open - i - 2) + "\"";
            const auto end = src.find(close, open);
            i = end == std::string::npos ? src.size() : end + close.size();
            out += ' ';
        } else if (src[i] == '"' || (src[i] == '\'' && (i == 0 || !std::isxdigit(static_cast<unsigned char>(src[i - 1]))))) {
            skip_quoted(src[i]);  // a ' after a hex digit is a digit separator (0x31'53'...)
            out += ' ';
        } else {
            out += src[i++];
        }
    }
    return out;
}

void add_identifiers(const std::string& code, std::set<std::string>& out) {
    std::size_t i = 0;
    while (i < code.size()) {
        if (!ident_start(code[i])) {
            ++i;
            continue;
        }
        std::size_t end = i;
        while (end < code.size() && ident_char(code[end])) ++end;
        out.insert(code.substr(i, end - i));
        i = end;
    }
}

std::vector<std::string> missing(const std::vector<std::string>& comments, const std::set<std::string>& code_identifiers) {
    std::vector<std::string> out;
    for (const auto& c : comments)
        for (const auto& name : named_identifiers(c))
            if (code_identifiers.count(name) == 0) out.push_back(name + "  (in: SYNC:" + c + ")");
    return out;
}

std::vector<fs::path> source_files() {
    std::vector<fs::path> out;
    for (const char* dir : {"bus", "daemon", "clients", "bench", "examples", "tests"}) {
        const fs::path root = fs::path(SHMBUS_SOURCE_DIR) / dir;
        if (!fs::exists(root)) continue;
        for (const auto& e : fs::recursive_directory_iterator(root)) {
            const auto ext = e.path().extension();
            if (e.is_regular_file() && (ext == ".h" || ext == ".cpp")) out.push_back(e.path());
        }
    }
    return out;
}

TEST(SyncComments, TheCheckCatchesANameThatIsGone) {
    const std::string code = "void store_ack() { slot.ack_position.store(p, release); }\n";
    std::set<std::string> ids;
    add_identifiers(without_comments(code + "// place_gating_cursor() is only mentioned here\n"
                                            "const char* s = \"place_gating_cursor\";\n"),
                    ids);
    const auto comments = sync_comments("  x.load();  // SYNC: pairs with store_ack's release of\n"
                                        "  // ack_position and with place_gating_cursor() (seq_cst)\n"
                                        "  y = 1;  // not a continuation: placed_nowhere\n");
    ASSERT_EQ(comments.size(), 1u);
    const auto gone = missing(comments, ids);
    ASSERT_EQ(gone.size(), 1u);
    EXPECT_EQ(gone[0].substr(0, gone[0].find(' ')), "place_gating_cursor");
    EXPECT_EQ(named_identifiers("pairs with PublisherCore::min_gating_ack"),
              (std::set<std::string>{"PublisherCore", "min_gating_ack"}));
}

TEST(SyncComments, EveryNameASyncCommentGivesExistsInTheCode) {
    const auto files = source_files();
    ASSERT_GT(files.size(), 20u) << "source tree not found at " << SHMBUS_SOURCE_DIR;
    std::set<std::string> ids;
    std::vector<std::string> comments;
    for (const auto& f : files) {
        const std::string text = read(f);
        add_identifiers(without_comments(text), ids);
        for (auto& c : sync_comments(text)) comments.push_back(std::move(c));
    }
    EXPECT_GT(comments.size(), 30u);  // the check reads the comments it is meant to
    const auto gone = missing(comments, ids);
    EXPECT_TRUE(gone.empty()) << "SYNC: comments name what no longer exists:\n" << [&] {
        std::string all;
        for (const auto& g : gone) all += "  " + g + "\n";
        return all;
    }();
}

// The orders that need a partner: everything but relaxed, and fences.
bool orders_memory(const std::string& line) {
    for (const char* word : {"memory_order_acquire", "memory_order_release", "memory_order_acq_rel", "memory_order_seq_cst",
                             "__ATOMIC_ACQUIRE", "__ATOMIC_RELEASE", "__ATOMIC_ACQ_REL", "__ATOMIC_SEQ_CST",
                             "atomic_thread_fence"})
        if (line.find(word) != std::string::npos) return true;
    return false;
}

// "file:line: text" for each non-relaxed operation with no comment that gives its partner (a
// SYNC: comment, or one that says what it pairs with) on its line, in the `window` lines above or
// in the two below (a comment that follows the statement it explains).
std::vector<std::string> unexplained_orders(const std::string& name, const std::string& source, std::size_t window = 6) {
    std::vector<std::string> lines;
    std::istringstream in(source);
    for (std::string line; std::getline(in, line);) lines.push_back(line);
    auto explains = [](const std::string& line) {
        const auto slashes = line.find("//");
        if (slashes == std::string::npos) return false;
        const std::string comment = line.substr(slashes);
        return comment.find("SYNC") != std::string::npos || comment.find("pairs with") != std::string::npos;
    };
    std::vector<std::string> out;
    for (std::size_t i = 0; i < lines.size(); ++i) {
        const std::string code = lines[i].substr(0, lines[i].find("//"));
        // A parameter's default order is not an operation: the caller's is.
        if (!orders_memory(code) || code.find("std::memory_order order =") != std::string::npos) continue;
        bool explained = false;
        const std::size_t last = std::min(lines.size() - 1, i + 2);
        for (std::size_t j = last + 1; j-- > (i >= window ? i - window : 0) && !explained;) explained = explains(lines[j]);
        if (!explained) out.push_back(name + ":" + std::to_string(i + 1) + ": " + lines[i]);
    }
    return out;
}

TEST(SyncComments, TheCheckCatchesAnOrderWithoutAPartner) {
    const std::string code =
        "  // SYNC: release pairs with the acquire in poll\n"
        "  tail.store(p, std::memory_order_release);\n"
        "  x = 1;\n  y = 2;\n  z = 3;\n  w = 4;\n  v = 5;\n  u = 6;\n"
        "  head.load(std::memory_order_acquire);\n  a = 7;\n  b = 8;\n"
        "  count.fetch_add(1, std::memory_order_relaxed);  // relaxed: statistics\n"
        "  std::atomic_thread_fence(std::memory_order_seq_cst);  // pairs with the fence in wait()\n";
    const auto bad = unexplained_orders("x.cpp", code);
    ASSERT_EQ(bad.size(), 1u);
    EXPECT_EQ(bad[0].substr(0, 8), "x.cpp:9:");
}

TEST(SyncComments, EveryOrderStrongerThanRelaxedNamesItsPartner) {
    std::vector<std::string> bad;
    std::size_t files = 0;
    for (const char* dir : {"bus/src", "bus/include", "daemon"}) {
        const fs::path root = fs::path(SHMBUS_SOURCE_DIR) / dir;
        for (const auto& e : fs::recursive_directory_iterator(root)) {
            const auto ext = e.path().extension();
            if (!e.is_regular_file() || (ext != ".h" && ext != ".cpp")) continue;
            ++files;
            for (auto& b : unexplained_orders(fs::relative(e.path(), SHMBUS_SOURCE_DIR).string(), read(e.path())))
                bad.push_back(std::move(b));
        }
    }
    EXPECT_GT(files, 50u);
    EXPECT_TRUE(bad.empty()) << bad.size() << " atomic operations order memory with no comment naming their partner:\n" << [&] {
        std::string all;
        for (const auto& b : bad) all += "  " + b + "\n";
        return all;
    }();
}

}  // namespace
}  // namespace shmbus
