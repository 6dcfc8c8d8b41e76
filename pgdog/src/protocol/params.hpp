#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

namespace pgdog::protocol {

// Session parameters as name/value pairs, with a content hash so that "is this server already
// set up for this client?" is one integer comparison per transaction.
//
// Kept in one string, "name\0value\0" per pair sorted by name: every client holds one of these
// for its whole connection, and a handful of pairs costs one small allocation this way instead of
// a vector of strings. Names compare case-insensitively, as PostgreSQL's do.
class Params {
 public:
  struct Item {
    std::string_view first;   // name
    std::string_view second;  // value
  };
  class Iterator {
   public:
    using value_type = Item;
    using difference_type = std::ptrdiff_t;
    Iterator() = default;
    explicit Iterator(const char* at) : at_(at) {}
    Item operator*() const;
    Iterator& operator++();
    bool operator==(const Iterator& other) const { return at_ == other.at_; }

   private:
    const char* at_ = nullptr;
  };
  struct Range {
    Iterator first, last;
    Iterator begin() const { return first; }
    Iterator end() const { return last; }
  };

  // The value, valid until the next change to these parameters.
  std::optional<std::string_view> get(std::string_view name) const;
  void set(std::string_view name, std::string_view value);
  bool erase(std::string_view name);
  std::uint64_t hash() const { return hash_; }
  bool empty() const { return pairs_.empty(); }
  std::size_t size() const;
  Range items() const {
    return {Iterator(pairs_.data()), Iterator(pairs_.data() + pairs_.size())};
  }
  // Gives back spare room (kept by every idle client after login).
  void compact() { pairs_.shrink_to_fit(); }
  // The same pairs, spelled the same.
  bool operator==(const Params& other) const {
    return hash_ == other.hash_ && pairs_ == other.pairs_;
  }

 private:
  // Offset of the pair named `name` (or pairs_.size()), and where a new one would go.
  std::size_t find(std::string_view name, std::size_t* insert_at) const;
  std::size_t pair_end(std::size_t at) const;  // just past the pair at offset `at`
  void rehash();
  std::string pairs_;
  std::uint64_t hash_ = 0;
};

// One copy of each distinct set of Params for everyone who holds the same: the startup
// parameters of an application's connections are usually all alike, and each idle client would
// otherwise keep its own. Thread-safe; a set is freed when its last holder lets go (swept from
// the table once it has doubled since the last sweep).
class SharedParams {
 public:
  std::shared_ptr<const Params> intern(Params params);
  std::size_t distinct() const;  // sets in the table, some perhaps no longer held

 private:
  mutable std::mutex mutex_;
  std::unordered_multimap<std::uint64_t, std::weak_ptr<const Params>> by_hash_;
  std::size_t sweep_at_ = 64;
};

// Parameters a client may carry in its startup packet and expect to hold on any pooled server;
// they are applied with SET. Everything else in a startup packet (user, database, replication,
// options, ...) is not a settable session parameter.
bool is_session_parameter(std::string_view name);

// Parameter names compare without regard to case, as PostgreSQL's do.
bool iequals_ascii(std::string_view a, std::string_view b);

// Parameters PostgreSQL reports with ParameterStatus whenever they change (GUC_REPORT).
bool is_reported_parameter(std::string_view name);

// Parameters the server reports but a client can never set (server_version, is_superuser, ...).
bool is_read_only_parameter(std::string_view name);

// Parses the startup "options" parameter: whitespace-separated "-c name=value" and
// "--name=value" settings, backslash escaping the next character (as PostgreSQL does).
// Nothing when it holds anything else (other command-line switches are not settings).
std::optional<std::vector<std::pair<std::string, std::string>>> parse_options(
    std::string_view options);

// Sets `name` to `value` for the session (set_config(), both quoted as literals).
void append_set(std::string& sql, std::string_view name, std::string_view value);
void append_reset(std::string& sql, std::string_view name);

}  // namespace pgdog::protocol
