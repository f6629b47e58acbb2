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
/// sequence) and consecutive in their output. `what` names the config key in errors.
template <class T>
FieldSpan consecutive_fields(const embedding::EmbeddingBagCollection<T>& emb,
                             const std::vector<std::string>& names, bool sequence,
                             const std::string& what) {
  FieldSpan span{-1, 0};
  for (const auto& name : names) {
    size_t f = 0;
    try {
      f = emb.field_index(name, sequence);
    } catch (const Error&) {
      throw Error(fmt::format("{} field '{}' must be a {} field", what, name,
                              sequence ? "sequence (max_len > 0)" : "pooled (max_len = 0)"));
    }
    const int64_t off = emb.field_offset(f);
    if (span.offset < 0) span.offset = off;
    LOCKSTEP_CHECK(off == span.offset + span.width,
                   "{} fields must be consecutive in model.fields (field '{}' is not next to the "
                   "previous one)",
                   what, name);
    span.width += field_width(emb, f);
  }
  return span;
}

/// The pooled field first[i] and the sequence field second[i] must have equal widths (target
/// item and history item, ...).
template <class T>
void check_paired_widths(const embedding::EmbeddingBagCollection<T>& emb,
                         const std::vector<std::string>& first,
                         const std::vector<std::string>& second, const std::string& what) {
  for (size_t i = 0; i < first.size() && i < second.size(); ++i) {
    const int64_t a = field_width(emb, emb.field_index(first[i], false));
    const int64_t b = field_width(emb, emb.field_index(second[i], true));
    LOCKSTEP_CHECK(a == b, "{}: field '{}' ({} wide) and field '{}' ({} wide) must have the same "
                   "width", what, first[i], a, second[i], b);
  }
}

}  // namespace lockstep::models
