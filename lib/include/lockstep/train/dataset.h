#pragma once
// Opening a data set in one call: files, directories or globs of text records or binary caches
// (lockstep-data convert), read once across ranks, with sample ids; and the parts of a directory
// written by lockstep-datagen. What a driver needs between "the user named some data" and a
// BatchSource to train on (docs/data.md).
//
//   const auto dir = train::read_data_directory("out/demo");
//   const auto schema = data::Schema::load(dir.schema);
//   train::DatasetOptions options;
//   options.source.batch_size = 512;
//   train::Dataset train_set = train::open_dataset(dir.train, &schema, options, "train");
//   trainer.fit(*train_set.source);
//
// Sample ids (data::Batch::sample_ids), unique within one open_dataset() call and the same for
// any rank count, so that every record is read exactly once across ranks can be checked:
//   text   the record's byte offset in the concatenation of the files, in list order (sparse:
//          not 0, 1, 2, …). Two calls on the same list give the same ids; different lists may
//          share ids.
//   cache  the ids stored in the cache: those of the text data it was converted from (its byte
//          offsets, as above). Caches converted separately may share ids; convert the files of
//          one data set in one `lockstep-data convert` run to keep them unique.

#include <cmath>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "lockstep/data/schema.h"
#include "lockstep/train/batch_source.h"

namespace lockstep::train {

/// A data set opened by open_dataset(): this rank's batches and the files they come from.
struct Dataset {
  data::Schema schema;                  ///< of the records: the one given, or the caches'
  std::unique_ptr<BatchSource> source;  ///< a TextBatchSource or a CacheBatchSource
  std::vector<std::string> files;       ///< the specs expanded (data::expand_data_paths), in order
  std::vector<uint64_t> sizes;          ///< the size of each file in bytes
  uint64_t bytes = 0;                   ///< the sum of `sizes`
  bool cache = false;                   ///< binary caches (else text records)
};

struct DatasetOptions {
  /// Batch size, rank and rank count, decoding threads, shuffling, bad records.
  FileSourceOptions source;
  /// Accept files holding 0 bytes in all (else an Error).
  bool allow_empty = false;
  /// Names, in errors, how the caller's user sets allow_empty and passes a schema (a driver's
  /// flags: "--allow-empty-data", "--schema"); empty: the library's names are used.
  std::string allow_empty_flag;
  std::string schema_flag;
  /// Names the schema given to open_dataset() in the error when a cache holds another one
  /// ("the training data's", a file name); empty: "the schema given".
  std::string schema_name;
};

/// Opens the data files named by `specs` (files, directories, globs: data::expand_data_paths)
/// for this rank (options.source.rank of .ranks): a TextBatchSource when they are text, a
/// CacheBatchSource when they are binary caches (is_cache_file; a mix is an error).
/// `schema`: the schema of text records; for caches, the one they must hold (an Error when they
/// hold another); null: the caches' own (text files then need one: an Error). `what` names the
/// list in errors ("--train", "validation data"), e.g. "--train data/*.csv: the pattern matches
/// no file". Files are memory-mapped here: an unreadable file fails now, naming it.
Dataset open_dataset(const std::vector<std::string>& specs, const data::Schema* schema,
                     const DatasetOptions& options, const std::string& what);

/// The parts of a directory written by lockstep-datagen (docs/data.md): paths, not checked
/// beyond meta.json (open_dataset() names a missing file).
struct DataDirectory {
  std::string schema;              ///< DIR/schema.toml
  std::vector<std::string> train;  ///< meta.json's training files, else DIR/train.tsv
  std::vector<std::string> valid;  ///< DIR/valid.tsv when it exists, else none
  std::vector<std::string> test;   ///< DIR/test.tsv
  /// The oracle (Bayes) AUC of the test split recorded in meta.json; NaN when there is none.
  double oracle_auc = NAN;
};

/// Reads DIR/meta.json when present (an Error naming it when it is not lockstep-datagen's).
DataDirectory read_data_directory(const std::string& dir);

}  // namespace lockstep::train
