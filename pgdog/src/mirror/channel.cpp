#include "mirror/channel.hpp"

#include "mirror/rate_limited_log.hpp"

namespace pgdog::mirror {

namespace {

// Held by pointer: GCC 12 miscompiles a coroutine taking this move-only type by value.
Task<void> reset(std::shared_ptr<backend::Lease> lease) {
  const bool reusable = co_await (*lease)->reset_session();
  if (!reusable) (*lease)->mark_broken();
}

}  // namespace

Channel::~Channel() {
  if (on_close) on_close();
  reset_and_release(std::move(lease), cluster);
}

void reset_and_release(backend::Lease lease, std::string_view cluster) {
  if (!lease || lease->broken()) return;
  auto executor = lease->stream().socket().get_executor();
  asio::co_spawn(executor, reset(std::make_shared<backend::Lease>(std::move(lease))),
                 log_task_errors(cluster, "session reset"));
}

}  // namespace pgdog::mirror
