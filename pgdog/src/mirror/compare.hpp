#pragma once

// Comparing what the mirror returned with what the primary returned, statement by statement.
// Sans-io: results in, divergences out.

#include <string>
#include <string_view>
#include <vector>

#include "backend/prepared.hpp"
#include "mirror/request.hpp"
#include "stats/mirror_stats.hpp"

namespace pgdog::mirror {

struct Divergent {
  stats::Divergence kind;
  std::size_t statement;  // index into the transaction's statements
};

// "UPDATE 1" on the primary and "UPDATE 0" on the mirror is a row_count divergence; the same
// tags with different rows (when `rows`) a result divergence; an error on one side only an error
// divergence. After an error the rest of the transaction is its consequence and is not compared.
std::vector<Divergent> compare(const StatementResults& primary, const StatementResults& mirror,
                               bool rows);

// The SQL of each statement the frames execute, in execution order (one per result): the
// statements of each simple Query, and the statement behind each Execute.
std::vector<std::string> statement_texts(std::string_view frames,
                                         const backend::ClientStatements* statements);

}  // namespace pgdog::mirror
