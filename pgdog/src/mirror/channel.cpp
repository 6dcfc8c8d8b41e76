#include "mirror/channel.hpp"

#include "mirror/rate_limited_log.hpp"

namespace pgdog::mirror {

namespace {

// Held by pointer: GCC 12 miscompiles a coroutine taking this move-only type by value.
Task<void> reset_and_release(std::shared_ptr<backend::Lease> lease) {
  const bool reusable = co_await (*lease)->reset_session();
  if (!reusable) (*lease)->mark_broken();
}

}  // namespace

Channel::~Channel() {
  if (on_close) on_close();
  if (!lease || lease->broken()) return;
  auto executor = lease->stream().socket().get_executor();
  asio::co_spawn(executor, reset_and_release(std::make_shared<backend::Lease>(std::move(lease))),
                 log_task_errors(cluster, "session reset"));
}

}  // namespace pgdog::mirror
