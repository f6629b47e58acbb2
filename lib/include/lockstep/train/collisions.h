#pragma once
// How many distinct keys share a row in each hashed embedding table: the cost of the hashing
// trick, reported at start-up (docs/data.md, "Collisions").

#include <cstdint>
#include <string>
#include <vector>

#include "lockstep/data/batch.h"
#include "lockstep/models/embedding_model.h"

namespace lockstep::train {

struct TableCollisions {
  std::string table;
  int64_t rows = 0;
  int64_t keys = 0;       ///< distinct keys of the columns that read the table
  int64_t rows_used = 0;  ///< distinct rows they map to
  bool exact = false;     ///< keys are every key of the data (else: those of a sample)
  bool identity = false;  ///< ids = "identity": no collisions by construction
  bool dynamic = false;   ///< kind = "dynamic": a slot per key, no collisions either
  /// Keys that share their row with another key counted before them.
  int64_t colliding() const { return keys - rows_used; }
};

/// For each table of `model`, the distinct keys of the Batch::sparse columns that read it (the
/// model's fields; `columns` names Batch::sparse in order) found in `keys_of_column` (one list
/// per column, any order, repeats fine), and the rows they map to. `exact`: the lists hold every
/// key of the data (a binary cache's vocabulary, or a sample that was all the data).
template <class T>
std::vector<TableCollisions> count_collisions(models::EmbeddingModel<T>& model,
                                              const std::vector<std::string>& columns,
                                              const std::vector<std::vector<uint64_t>>& keys_of_column,
                                              bool exact);

/// The keys of each Batch::sparse column of a sample batch (for count_collisions).
std::vector<std::vector<uint64_t>> keys_by_column(const data::Batch& sample);

/// One line per table, e.g. "table 'item': 52,114 distinct keys in 131,072 rows, 9,301 share a
/// row (17.8 %; in a sample of 100,000 records)".
std::string describe_collisions(const std::vector<TableCollisions>& counts, int64_t sample_records);

}  // namespace lockstep::train
