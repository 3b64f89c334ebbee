// Field values as table text. Unset values print as "-".

#pragma once

#include <google/protobuf/duration.pb.h>
#include <google/protobuf/repeated_ptr_field.h>
#include <google/protobuf/timestamp.pb.h>

#include <string>

namespace evgate::admin::cli {

// A configured duration, exactly and in the form flags take ("1500ms", "5m"); "-" when unset.
std::string durationText(const google::protobuf::Duration* duration);
// A measured duration, rounded for reading ("850ms", "12.3s", "5m07s", "3h02m", "2d04h").
std::string elapsedText(const google::protobuf::Duration& duration);
// RFC 3339 in UTC ("2030-01-02T03:04:05.250Z"); "-" when unset.
std::string timeText(const google::protobuf::Timestamp* timestamp);
std::string yesNo(bool value);
std::string orDash(const std::string& text);
// "a, b, c"; "-" when empty.
std::string listText(const google::protobuf::RepeatedPtrField<std::string>& items);

}  // namespace evgate::admin::cli
