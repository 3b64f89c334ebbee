#include "admin/update_mask.h"

#include <google/protobuf/util/field_mask_util.h>

#include <algorithm>
#include <initializer_list>
#include <string>
#include <string_view>

#include "admin/resource_convert.h"

namespace evgate::admin {
namespace {

using google::protobuf::FieldMask;
using google::protobuf::util::FieldMaskUtil;

constexpr std::initializer_list<const char*> kListenerOutputOnly = {
    "bound_address", "paused", "resume_time", "active_connections", "source"};
constexpr std::initializer_list<const char*> kClusterOutputOnly = {"source", "listeners"};

// The writable fields of a resource, for an update without a mask.
template <typename Message>
FieldMask writableFields(std::initializer_list<const char*> outputOnly) {
  FieldMask mask;
  const google::protobuf::Descriptor* descriptor = Message::descriptor();
  for (int i = 0; i < descriptor->field_count(); ++i) {
    const std::string& name = descriptor->field(i)->name();
    bool skip = name == "name";
    for (const char* field : outputOnly) skip = skip || name == field;
    if (!skip) mask.add_paths(name);
  }
  return mask;
}

template <typename Message>
grpc::Status checkMask(const FieldMask& mask, std::initializer_list<const char*> outputOnly,
                       std::string_view what) {
  const FieldMask writable = writableFields<Message>(outputOnly);
  for (const std::string& path : mask.paths()) {
    const std::string top = path.substr(0, path.find('.'));
    const bool known = FieldMaskUtil::IsValidPath<Message>(path);
    if (!known || std::find(writable.paths().begin(), writable.paths().end(), top) ==
                      writable.paths().end()) {
      return invalidArgument("update_mask",
                             "\"" + path + "\" is not a writable " + std::string(what) + " field");
    }
  }
  return grpc::Status::OK;
}

template <typename Message>
void applyUpdate(const Message& update, const FieldMask& mask,
                 std::initializer_list<const char*> outputOnly, Message& current) {
  FieldMaskUtil::MergeOptions options;
  options.set_replace_message_fields(true);
  options.set_replace_repeated_fields(true);
  FieldMaskUtil::MergeMessageTo(update,
                                mask.paths_size() > 0 ? mask : writableFields<Message>(outputOnly),
                                options, &current);
}

}  // namespace

grpc::Status checkListenerMask(const FieldMask& mask) {
  return checkMask<v1::Listener>(mask, kListenerOutputOnly, "listener");
}

grpc::Status checkClusterMask(const FieldMask& mask) {
  return checkMask<v1::Cluster>(mask, kClusterOutputOnly, "cluster");
}

void applyListenerUpdate(const v1::Listener& update, const FieldMask& mask, v1::Listener& current) {
  applyUpdate(update, mask, kListenerOutputOnly, current);
}

void applyClusterUpdate(const v1::Cluster& update, const FieldMask& mask, v1::Cluster& current) {
  applyUpdate(update, mask, kClusterOutputOnly, current);
}

}  // namespace evgate::admin
