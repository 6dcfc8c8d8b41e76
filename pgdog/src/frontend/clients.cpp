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
  std::lock_guard g(mutex_);
  user_ = std::move(user);
  database_ = std::move(database);
  application_name_ = std::move(application_name);
}

std::string ClientInfo::user() const {
  std::lock_guard g(mutex_);
  return user_;
}

std::string ClientInfo::database() const {
  std::lock_guard g(mutex_);
  return database_;
}

std::string ClientInfo::application_name() const {
  std::lock_guard g(mutex_);
  return application_name_;
}

void ClientInfo::set_session(std::weak_ptr<Terminable> s) {
  std::lock_guard g(mutex_);
  session_ = std::move(s);
}

std::shared_ptr<Terminable> ClientInfo::session() const {
  std::lock_guard g(mutex_);
  return session_.lock();
}

std::shared_ptr<ClientInfo> ClientRegistry::add(std::string address) {
  auto c = std::make_shared<ClientInfo>();
  c->address = std::move(address);
  std::lock_guard g(mutex_);
  c->id = next_id_++;
  // Keys are random so that a client cannot guess another's; the pid is unique among clients.
  do {
    RAND_bytes(reinterpret_cast<unsigned char*>(&c->process_id), sizeof(c->process_id));
    c->process_id &= 0x7fffffff;
  } while (c->process_id == 0 || by_pid_.contains(c->process_id));
  RAND_bytes(reinterpret_cast<unsigned char*>(&c->secret_key), sizeof(c->secret_key));
  by_pid_.emplace(c->process_id, c);
  c->connected_on_arrival = by_pid_.size();
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
