#include "core/untrusted_files.h"

#include <cctype>
#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

#include "core/bus_files.h"
#include "core/errno_error.h"

namespace shmbus::detail {

namespace {

const char* type_name(mode_t mode) noexcept {
    if (S_ISFIFO(mode)) return "a FIFO";
    if (S_ISSOCK(mode)) return "a socket";
    if (S_ISCHR(mode) || S_ISBLK(mode)) return "a device";
    if (S_ISDIR(mode)) return "a directory";
    if (S_ISLNK(mode)) return "a symbolic link";
    return "not a regular file";
}

}  // namespace

Result<int> open_checked_at(int dir_fd, const std::string& name, int flags, mode_t mode, bool own) noexcept {
    const int fd = ::openat(dir_fd, name.c_str(), flags | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC, mode);
    if (fd < 0) {
        const int err = errno;  // kept for the caller, whatever building the message does to errno
        Error e = err == ELOOP ? make_error(Errc::permission_denied, name + " is a symbolic link; refusing to follow it")
                               : errno_error(err == ENOENT ? Errc::topic_not_found : err == ENOSPC ? Errc::no_space
                                             : err == EACCES ? Errc::permission_denied : Errc::io_error,
                                             "cannot open " + name);
        errno = err;
        return e;
    }
    struct stat st{};
    std::string why;
    if (::fstat(fd, &st) != 0) why = std::string("cannot stat it: ") + std::strerror(errno);
    else if ((flags & O_DIRECTORY) == 0 && !S_ISREG(st.st_mode)) why = std::string("is ") + type_name(st.st_mode);
    else if (own && st.st_uid != ::geteuid())
        why = "belongs to uid " + std::to_string(st.st_uid) + ", not to this process's uid " + std::to_string(::geteuid());
    if (why.empty()) return fd;
    ::close(fd);
    Error e = make_error(Errc::permission_denied, name + " " + why + "; refusing to use it");
    errno = EACCES;
    return e;
}

Status check_private_dir(const std::string& path, std::string_view what, bool create) noexcept {
    const std::string label = std::string(what) + " " + path;
    try {
        std::error_code ec;
        if (create && std::filesystem::create_directories(path, ec)) (void)::chmod(path.c_str(), 0700);
        if (ec) return make_error(Errc::permission_denied, "cannot create " + label + ": " + ec.message());
    } catch (...) {
        return make_error(Errc::io_error, "cannot create " + label + ": out of memory");
    }
    struct stat st{};
    if (::lstat(path.c_str(), &st) != 0) return errno_error(errno == ENOENT ? Errc::topic_not_found : Errc::io_error, label);
    if (S_ISLNK(st.st_mode)) return make_error(Errc::permission_denied, label + " is a symbolic link; refusing to follow it");
    if (!S_ISDIR(st.st_mode)) return make_error(Errc::permission_denied, label + " is not a directory");
    if (st.st_uid != ::geteuid())
        return make_error(Errc::permission_denied, label + " belongs to uid " + std::to_string(st.st_uid) + ", not to shmbusd's uid " +
                                                       std::to_string(::geteuid()) +
                                                       ": another user may have made it; use a directory of your own");
    if ((st.st_mode & 022) != 0)
        return make_error(Errc::permission_denied, label + " is writable by others (mode " + mode_text(st.st_mode) +
                                                       "); make it private first: chmod go-w " + path);
    return ok_status();
}

Result<std::string> read_bounded_file(int dir_fd, const std::string& name, std::size_t max_bytes, bool own) noexcept {
    auto fd = open_checked_at(dir_fd, name, O_RDONLY, 0, own);
    if (!fd) return fd.error();
    std::string text;
    Status status = ok_status();
    try {
        struct stat st{};
        if (::fstat(*fd, &st) == 0 && uint64_t(st.st_size) > max_bytes) {
            status = make_error(Errc::invalid_argument, name + " is " + std::to_string(st.st_size) + " bytes, more than the " +
                                                            std::to_string(max_bytes) + " such a file may have");
        } else {
            char buf[16384];
            for (;;) {
                const ssize_t n = ::read(*fd, buf, sizeof buf);
                if (n < 0 && errno == EINTR) continue;
                if (n < 0) {
                    status = errno_error(Errc::io_error, "cannot read " + name);
                    break;
                }
                if (n == 0) break;
                if (text.size() + std::size_t(n) > max_bytes) {
                    status = make_error(Errc::invalid_argument, name + " is more than the " + std::to_string(max_bytes) +
                                                                    " bytes such a file may have");
                    break;
                }
                text.append(buf, std::size_t(n));
            }
        }
    } catch (...) {
        status = make_error(Errc::io_error, "cannot read " + name + ": out of memory");
    }
    ::close(*fd);
    if (!status) return status.error();
    return text;
}

std::optional<std::string> toml_shape_error(std::string_view text) {
    if (text.size() > kMaxTomlBytes)
        return "it is " + std::to_string(text.size()) + " bytes, more than the " + std::to_string(kMaxTomlBytes) + " allowed";
    // A scan that knows strings and comments, so that what is inside one counts for nothing. Dots
    // are counted since the last separator: a dotted key, a table name or one number (which has
    // at most one) lies between two of them.
    // Control characters other than tab and line ends are allowed nowhere in TOML, not even in
    // strings or comments; the parser asserts on some of them (a NUL in a table name).
    for (std::size_t i = 0, at_line = 1; i < text.size(); ++i) {
        const auto c = static_cast<unsigned char>(text[i]);
        if (c == '\n') ++at_line;
        if ((c < 0x20 && c != '\t' && c != '\n' && c != '\r') || c == 0x7f)
            return "line " + std::to_string(at_line) + ": control character " + std::to_string(c) + " (TOML allows none)";
    }
    std::size_t line = 1, depth = 0, dots = 0;
    bool line_start = true;        // only blanks so far on this line
    bool string_may_start = true;  // the last character that was not blank lets a string begin
    for (std::size_t i = 0; i < text.size(); ++i) {
        const char c = text[i];
        // A table header names its table: the parser assumes a name follows `[` or `[[` at the
        // start of a line (undefined behaviour otherwise, in a release build).
        if (line_start && c == '[') {
            std::size_t j = i + 1;
            if (j < text.size() && text[j] == '[') ++j;
            while (j < text.size() && (text[j] == ' ' || text[j] == '\t')) ++j;
            const char n = j < text.size() ? text[j] : '\0';
            if (!(std::isalnum(static_cast<unsigned char>(n)) || n == '_' || n == '-' || n == '"' || n == '\''))
                return "line " + std::to_string(line) + ": a table header without a name";
        }
        const bool blank = c == ' ' || c == '\t';
        line_start = c == '\n' || (blank && line_start);
        // Where a string may begin in TOML: a value after `=`, `[`, `,` or `{`, or a quoted key at
        // the start of a line or after a dot. A quote anywhere else is malformed text, read on as
        // text: what follows it is not taken for the inside of a string.
        if ((c == '"' || c == '\'') && !string_may_start) {
            string_may_start = false;
            continue;
        }
        if (!blank) string_may_start = c == '=' || c == '[' || c == ',' || c == '{' || c == '.' || c == '\n';
        switch (c) {
            case '\n': ++line; [[fallthrough]];
            case ',': case '=': dots = 0; break;
            case '#':
                while (i + 1 < text.size() && text[i + 1] != '\n') ++i;
                break;
            case '[': case '{':
                dots = 0;
                if (++depth > kMaxTomlNesting)
                    return "line " + std::to_string(line) + ": arrays or tables nested more than " +
                           std::to_string(kMaxTomlNesting) + " deep";
                break;
            case ']': case '}':
                dots = 0;
                if (depth > 0) --depth;
                break;
            case '.':
                if (++dots >= kMaxTomlKeyParts)
                    return "line " + std::to_string(line) + ": a key or table name of more than " +
                           std::to_string(kMaxTomlKeyParts) + " dotted parts";
                break;
            case '"': case '\'': {
                const bool multi = text.substr(i, 3) == std::string(3, c);
                const std::size_t width = multi ? 3 : 1;
                std::size_t j = i + width;
                for (; j < text.size(); ++j) {
                    if (c == '"' && text[j] == '\\') {
                        ++j;
                        continue;
                    }
                    if (text[j] == '\n') {
                        if (!multi) break;  // the parser reports the unterminated string
                        ++line;
                    }
                    if (text.substr(j, width) == text.substr(i, width)) break;
                }
                if (j < text.size() && text[j] == '\n' && !multi) i = j - 1;  // the newline is read next
                else i = std::min(j + width, text.size()) - 1;
                break;
            }
            default:
                // TOML allows other than ASCII only inside strings and comments; the parser's own
                // tables for bare Unicode keys (a TOML 1.1 draft) reach undefined behaviour on
                // some code points, so such text never gets that far.
                if (static_cast<unsigned char>(c) >= 0x80)
                    return "line " + std::to_string(line) + ": a character other than ASCII outside a string or comment";
                break;
        }
    }
    return std::nullopt;
}

}  // namespace shmbus::detail
