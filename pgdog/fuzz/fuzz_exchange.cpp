// The exchange machine (backend/exchange.hpp) driven as the client session drives it, with
// bytes from both sides chosen by the fuzzer: whatever arrives, it never accepts more than it
// was given, sends the server and the client whole frames, releases only a clean server, and
// never keeps a server in session mode.
//
// Input: one byte of options (bit 0: session mode, bit 1: prepared statements rewritten), then
// records of a selector byte (bit 0: 0 = client bytes, 1 = server bytes), a length byte and
// that many bytes, appended to that side's buffer.

#include <string>

#include "backend/exchange.hpp"
#include "frames.hpp"

namespace {

using namespace pgdog;
using Next = backend::Exchange::Next;

void check_frames(std::string_view bytes) {
  while (!bytes.empty()) {
    auto f = protocol::next_frame(bytes, fuzz::kMaxFrame);
    FUZZ_CHECK(f);
    bytes.remove_prefix(f->size());
  }
}

struct Run {
  Run(config::PoolerMode mode, bool rewrite) : exchange(mode, 1 << 16), rewriting(rewrite) {
    if (rewrite) exchange.rewrite_statements(registry);
    exchange.attached();
  }

  // False when the session would close the connection.
  bool client(std::string_view bytes) {
    from_client.append(bytes);
    const auto batch = exchange.read_client(from_client);
    FUZZ_CHECK(batch.size <= from_client.size());
    const std::string_view frames = std::string_view(from_client).substr(0, batch.size);
    check_frames(frames);
    const std::string_view sent = exchange.prepare(frames, server);
    check_frames(sent);
    if (!rewriting) FUZZ_CHECK(sent == frames);
    from_client.erase(0, batch.size);
    return batch.violation.empty() && !batch.terminate;
  }

  bool answer(std::string_view bytes) {
    from_server.append(bytes);
    while (!from_server.empty()) {
      const auto chunk = exchange.read_server(from_server, server);
      if (!chunk.lost.empty()) {
        FUZZ_CHECK(server.broken);
        return false;
      }
      FUZZ_CHECK(chunk.done <= from_server.size());
      if (!rewriting) FUZZ_CHECK(chunk.out == std::string_view(from_server).substr(0, chunk.done));
      from_server.erase(0, chunk.done);
      if (chunk.done == 0) break;
    }
    return true;
  }

  void check_next() {
    const Next next = exchange.next(&server, !from_server.empty());
    if (next == Next::release) {
      FUZZ_CHECK(exchange.clean(server));
      FUZZ_CHECK(exchange.mode() == config::PoolerMode::transaction);
      FUZZ_CHECK(!exchange.busy());
    }
    if (next == Next::answer) {
      const std::string_view out = exchange.answer_now(server);
      FUZZ_CHECK(!out.empty());
      check_frames(out);
    }
  }

  backend::StatementRegistry registry;
  backend::Exchange exchange;
  backend::ServerState server;
  bool rewriting;
  std::string from_client;
  std::string from_server;
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const auto mode = (data[0] & 1) != 0 ? config::PoolerMode::session : config::PoolerMode::transaction;
  Run run(mode, (data[0] & 2) != 0);
  std::string_view rest = fuzz::as_view(data + 1, size - 1);
  while (rest.size() >= 2) {
    const bool from_server = (rest[0] & 1) != 0;
    const std::size_t n = std::min<std::size_t>(static_cast<std::uint8_t>(rest[1]), rest.size() - 2);
    const std::string_view bytes = rest.substr(2, n);
    rest.remove_prefix(2 + n);
    if (!(from_server ? run.answer(bytes) : run.client(bytes))) break;
    run.check_next();
  }
  return 0;
}
