#pragma once

// Protocol messages as byte strings, for tests that script a conversation.

#include <cstdint>
#include <string>
#include <string_view>

#include "protocol/frame.hpp"
#include "protocol/messages.hpp"

namespace pgdog::wire {

// --- From the client ---

inline std::string query(std::string_view sql) {
  std::string out;
  protocol::write_query(out, sql);
  return out;
}
inline std::string parse(std::string_view name, std::string_view sql) {
  std::string out;
  protocol::write_parse(out, name, sql, {});
  return out;
}
inline std::string bind(std::string_view statement, std::string_view portal = "") {
  std::string out;
  protocol::write_bind(out, portal, statement, std::string("\0\0\0\0\0\0", 6));
  return out;
}
inline std::string describe(char kind, std::string_view name) {
  std::string out;
  protocol::write_describe(out, 'D', kind, name);
  return out;
}
inline std::string close_statement(std::string_view name) {
  std::string out;
  protocol::write_describe(out, 'C', 'S', name);
  return out;
}
inline std::string execute(std::string_view portal = "") {
  std::string out;
  protocol::Writer(out).begin('E').cstring(portal).i32(0).finish();
  return out;
}
inline std::string empty(char type) {
  std::string out;
  protocol::write_empty(out, type);
  return out;
}
inline std::string startup(std::string_view user, std::string_view database) {
  std::string out;
  protocol::write_startup(out, {{"user", std::string(user)}, {"database", std::string(database)}});
  return out;
}
inline std::string sync() { return empty('S'); }
inline std::string flush() { return empty('H'); }
inline std::string terminate() { return empty('X'); }
inline std::string copy_data(std::string_view bytes) {
  std::string out;
  protocol::Writer(out).begin('d').bytes(bytes).finish();
  return out;
}
inline std::string copy_done() { return empty('c'); }

// --- From the server ---

inline std::string ready(char status = 'I') {
  std::string out;
  protocol::write_ready_for_query(out, status);
  return out;
}
inline std::string complete(std::string_view tag) {
  std::string out;
  protocol::write_command_complete(out, tag);
  return out;
}
inline std::string row_description(std::string_view column = "x") {
  std::string out;
  protocol::write_row_description(out, {std::string(column)});
  return out;
}
inline std::string data_row(std::string_view value) {
  std::string out;
  protocol::write_data_row(out, {std::string(value)});
  return out;
}
inline std::string error(std::string_view code, std::string_view severity = "ERROR",
                         std::string_view message = "scripted error") {
  std::string out;
  protocol::write_error(out, {.severity = severity, .code = code, .message = message});
  return out;
}
inline std::string notice(std::string_view message) {
  std::string out;
  protocol::write_notice(out, {.severity = "NOTICE", .code = "00000", .message = message});
  return out;
}
inline std::string parameter_status(std::string_view name, std::string_view value) {
  std::string out;
  protocol::write_parameter_status(out, name, value);
  return out;
}
inline std::string notification(std::int32_t pid, std::string_view channel,
                                std::string_view payload) {
  std::string out;
  protocol::Writer(out).begin('A').i32(pid).cstring(channel).cstring(payload).finish();
  return out;
}
inline std::string parse_complete() { return empty('1'); }
inline std::string bind_complete() { return empty('2'); }
inline std::string close_complete() { return empty('3'); }
inline std::string no_data() { return empty('n'); }
inline std::string copy_in_response() {
  std::string out;
  protocol::Writer(out).begin('G').u8(0).i16(0).finish();
  return out;
}
inline std::string copy_out_response() {
  std::string out;
  protocol::Writer(out).begin('H').u8(0).i16(0).finish();
  return out;
}

// A simple query's whole answer: one row, its tag, ReadyForQuery.
inline std::string select_answer(std::string_view value = "1", char status = 'I') {
  return row_description() + data_row(value) + complete("SELECT 1") + ready(status);
}

// Message types of a byte stream, e.g. "TDCZ".
inline std::string types(std::string_view bytes) {
  std::string out;
  while (!bytes.empty()) {
    auto f = protocol::next_frame(bytes, 1 << 30);
    if (!f) return out + "?";
    out.push_back(f->type);
    bytes.remove_prefix(f->size());
  }
  return out;
}

}  // namespace pgdog::wire
