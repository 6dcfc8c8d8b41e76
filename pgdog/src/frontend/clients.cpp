#include "frontend/clients.hpp"

#include <openssl/rand.h>

namespace pgdog::frontend {

std::string_view to_string(ClientState s) {
  switch (s) {
    case ClientState::login:
      return "login";
    case ClientState::idle:
      return "idle";
    case ClientState::waiting:
      return "waiting";
    case ClientState::active:
      return "active";
  }
  return "unknown";
}

void ClientInfo::set_identity(std::string user, std::string database,
                              std::string application_name) {
  if (identified_.load(std::memory_order_relaxed)) return;  // once
  user_ = std::move(user);
  database_ = std::move(database);
  application_name_ = std::move(application_name);
  identified_.store(true, std::memory_order_release);
}

std::string ClientInfo::user() const {
  return identified_.load(std::memory_order_acquire) ? user_ : std::string();
}

std::string ClientInfo::database() const {
  return identified_.load(std::memory_order_acquire) ? database_ : std::string();
}

std::string ClientInfo::application_name() const {
  return identified_.load(std::memory_order_acquire) ? application_name_ : std::string();
}

std::shared_ptr<ClientInfo> ClientRegistry::add(std::string address,
                                                std::weak_ptr<Terminable> session) {
  auto c = std::make_shared<ClientInfo>();
  c->address = std::move(address);
  c->session_ = std::move(session);
  std::lock_guard g(mutex_);
  c->id = next_id_++;
  // Keys are random so that a client cannot guess another's; the pid is unique among clients.
  do {
    RAND_bytes(reinterpret_cast<unsigned char*>(&c->process_id), sizeof(c->process_id));
    c->process_id &= 0x7fffffff;
  } while (c->process_id == 0 || by_pid_.contains(c->process_id));
  RAND_bytes(reinterpret_cast<unsigned char*>(&c->secret_key), sizeof(c->secret_key));
  by_pid_.emplace(c->process_id, c);
  c->connected_on_arrival = static_cast<std::uint32_t>(by_pid_.size());
  return c;
}

void ClientRegistry::remove(const ClientInfo& client) {
  std::lock_guard g(mutex_);
  by_pid_.erase(client.process_id);
}

std::shared_ptr<ClientInfo> ClientRegistry::find(std::int32_t process_id,
                                                 std::int32_t secret_key) const {
  std::lock_guard g(mutex_);
  auto it = by_pid_.find(process_id);
  if (it == by_pid_.end() || it->second->secret_key != secret_key) return nullptr;
  return it->second;
}

std::vector<std::shared_ptr<ClientInfo>> ClientRegistry::list() const {
  std::lock_guard g(mutex_);
  std::vector<std::shared_ptr<ClientInfo>> out;
  out.reserve(by_pid_.size());
  for (const auto& [pid, c] : by_pid_) out.push_back(c);
  return out;
}

std::size_t ClientRegistry::size() const {
  std::lock_guard g(mutex_);
  return by_pid_.size();
}

}  // namespace pgdog::frontend
