#pragma once
// Internal: locating groups of embedding fields (the target, the history) in a collection's
// outputs, for the sequence models.

#include <string>
#include <vector>

#include "lockstep/embedding/embedding_bag_collection.h"

namespace lockstep::models {

/// Width of field f (its table's dim).
template <class T>
int64_t field_width(const embedding::EmbeddingBagCollection<T>& emb, size_t f) {
  for (const auto& t : emb.tables())
    if (t.config().name == emb.fields()[f].table) return t.dim();
  return 0;
}

struct FieldSpan {
  int64_t offset = 0;  // first column in the pooled or the sequence output
  int64_t width = 0;   // total width
};

/// The columns that `names` occupy, checking that they are fields of the right kind (pooled or
/// sequence) and consecutive in their output. `key` is the config key that lists them
/// ("model.din.query"): errors are ConfigErrors about its element ("model.din.query[1]"), or
/// about `key` itself when it is a single name (list = false: "model.bst.time_gap").
template <class T>
FieldSpan consecutive_fields(const embedding::EmbeddingBagCollection<T>& emb,
                             const std::vector<std::string>& names, bool sequence,
                             const std::string& key, bool list = true) {
  FieldSpan span{-1, 0};
  for (size_t i = 0; i < names.size(); ++i) {
    const std::string& name = names[i];
    const std::string element = list ? fmt::format("{}[{}]", key, i) : key;
    size_t f = 0;
    try {
      f = emb.field_index(name, sequence);
    } catch (const Error& e) {
      if (std::string(e.what()).find("several") != std::string::npos)
        throw ConfigError(element, fmt::format("{} = '{}': the {}: name a column that feeds one",
                                               element, name, e.what()));
      throw ConfigError(element, fmt::format("{} = '{}' is not a {} field: name the column of a "
                                             "[[model.fields]] entry {}",
                                             element, name, sequence ? "sequence" : "pooled",
                                             sequence ? "with max_len > 0" : "without max_len"));
    }
    const int64_t off = emb.field_offset(f);
    if (span.offset < 0) span.offset = off;
    LOCKSTEP_CHECK_KEY(off == span.offset + span.width, element,
                       "{} = '{}' does not follow '{}' in model.fields: the fields of {} must be "
                       "consecutive {} fields, in this order",
                       element, name, names[i - 1], key, sequence ? "sequence" : "pooled");
    span.width += field_width(emb, f);
  }
  return span;
}

/// The pooled field first[i] and the sequence field second[i] must have equal widths (target
/// item and history item, ...); `first_key` and `second_key` are the config keys that list them.
/// Throws ConfigError about second_key[i].
template <class T>
void check_paired_widths(const embedding::EmbeddingBagCollection<T>& emb,
                         const std::vector<std::string>& first, const std::string& first_key,
                         const std::vector<std::string>& second, const std::string& second_key) {
  for (size_t i = 0; i < first.size() && i < second.size(); ++i) {
    const int64_t a = field_width(emb, emb.field_index(first[i], false));
    const int64_t b = field_width(emb, emb.field_index(second[i], true));
    const std::string key = fmt::format("{}[{}]", second_key, i);
    LOCKSTEP_CHECK_KEY(a == b, key,
                       "{} = '{}' is {} wide but {}[{}] = '{}' is {} wide: paired fields must "
                       "read tables of the same dim",
                       key, second[i], b, first_key, i, first[i], a);
  }
}

}  // namespace lockstep::models
