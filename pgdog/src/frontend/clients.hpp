#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "backend/server_connection.hpp"
#include "protocol/messages.hpp"

namespace pgdog::frontend {

enum class ClientState : std::uint8_t { login, idle, waiting, active };
std::string_view to_string(ClientState s);

// A session as the registry sees it: something it can ask to end.
class Terminable {
 public:
  virtual ~Terminable() = default;
  // Graceful: end after the current transaction (at once if idle), telling the client 57P01.
  virtual void terminate(bool graceful) = 0;
  // A CancelRequest with this session's key: cancel the query its server is running, if any.
  virtual void cancel_query() = 0;
};

// What the proxy shows about a connected client (SHOW CLIENTS) and how to cancel its query.
struct ClientInfo {
  std::uint64_t id = 0;
  std::int32_t process_id = 0;  // our BackendKeyData, never the server's
  std::int32_t secret_key = 0;
  std::string address;
  std::chrono::system_clock::time_point connected_at = std::chrono::system_clock::now();
  std::atomic<ClientState> state{ClientState::login};

 private:
  std::atomic<bool> identified_{false};  // user_, database_ and application_name_ are set

 public:
  // Clients connected when this one arrived, itself included: what max_client_conn is checked
  // against (login waits for the startup packet, by when a burst is all connected).
  std::uint32_t connected_on_arrival = 0;
  std::atomic<std::uint64_t> transactions{0};
  std::atomic<std::uint64_t> queries{0};
  // The mirror set version (mirror::MirrorSet) the client's open transaction began under, 0
  // between transactions: a transaction begun before a mirror was added misses that mirror.
  std::atomic<std::uint64_t> mirror_version{0};

  // Set once, at login; empty until then. Read by the admin console.
  void set_identity(std::string user, std::string database, std::string application_name);
  std::string user() const;
  std::string database() const;
  std::string application_name() const;

  std::shared_ptr<Terminable> session() const { return session_.lock(); }

 private:
  friend class ClientRegistry;
  // Written before identified_ is set and never after: no lock (a mutex would be 40 bytes of
  // every client).
  std::string user_;
  std::string database_;
  std::string application_name_;
  // Set before the registry shows the client to anyone, never after.
  std::weak_ptr<Terminable> session_;
};

// Every connected client, by id and by the key it would cancel with.
class ClientRegistry {
 public:
  // `session` is what terminate() and KILL reach: set before the client is listed.
  std::shared_ptr<ClientInfo> add(std::string address, std::weak_ptr<Terminable> session = {});
  void remove(const ClientInfo& client);
  // The client owning this key, or null: a wrong key matches nothing.
  std::shared_ptr<ClientInfo> find(std::int32_t process_id, std::int32_t secret_key) const;
  std::vector<std::shared_ptr<ClientInfo>> list() const;
  std::size_t size() const;

 private:
  mutable std::mutex mutex_;
  std::unordered_map<std::int32_t, std::shared_ptr<ClientInfo>> by_pid_;
  std::uint64_t next_id_ = 1;
};

}  // namespace pgdog::frontend
