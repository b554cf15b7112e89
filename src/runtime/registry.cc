// The registry tables, generated from op_list.h (one entry per row, in OpType order).
#include "runtime/registry.h"

namespace bmx::rt {

namespace {

const OpInfo kOps[] = {
#define BMX_OP_INFO(Name, kind, in_place) {OpType::Name, #Name, fb::OpOptions::Name, kind, in_place, &k##Name##Op},
    BMX_OP_LIST(BMX_OP_INFO)
#undef BMX_OP_INFO
};
static_assert(sizeof(kOps) / sizeof(kOps[0]) == kNumOpTypes, "one registry entry per OpType");

}  // namespace

const OpInfo& op_info(OpType t) { return kOps[static_cast<int>(t)]; }

const OpInfo* op_info_for(fb::OpOptions t) {
  switch (t) {
#define BMX_OP_CASE(Name, kind, in_place) \
  case fb::OpOptions::Name:               \
    return &kOps[static_cast<int>(OpType::Name)];
    BMX_OP_LIST(BMX_OP_CASE)
#undef BMX_OP_CASE
    default:
      return nullptr;
  }
}

const char* op_type_name(OpType t) {
  const int i = static_cast<int>(t);
  return i >= 0 && i < kNumOpTypes ? kOps[i].name : "?";
}

std::string OpNode::describe() const {
  return "op " + std::to_string(index) + " '" + name + "' (" + op_type_name(type) + ")";
}

const char* profile_kind_name(int k) {
  static const char* names[kNumKinds] = {"packing", "binary_conv", "float_conv", "bn_threshold",
                                         "pool", "concat", "other"};
  return (k >= 0 && k < kNumKinds) ? names[k] : "?";
}

}  // namespace bmx::rt
