#include "common/json.hpp"

#include <set>
#include <vector>

namespace pgolf {

namespace {

// SAX pass that rejects duplicate object keys, naming the path of the duplicate.
class DuplicateKeyCheck final : public nlohmann::json_sax<json> {
 public:
  std::string duplicate_path;

  bool null() override { return value(); }
  bool boolean(bool) override { return value(); }
  bool number_integer(number_integer_t) override { return value(); }
  bool number_unsigned(number_unsigned_t) override { return value(); }
  bool number_float(number_float_t, const string_t&) override { return value(); }
  bool string(string_t&) override { return value(); }
  bool binary(binary_t&) override { return value(); }
  bool start_object(std::size_t) override { return open(true); }
  bool end_object() override { return close(); }
  bool start_array(std::size_t) override { return open(false); }
  bool end_array() override { return close(); }
  bool key(string_t& k) override {
    Frame& f = stack_.back();
    if (!f.keys.insert(k).second) {
      duplicate_path = join_key(f.path, k);
      return false;
    }
    f.last_key = k;
    return true;
  }
  bool parse_error(std::size_t, const std::string&, const nlohmann::detail::exception&) override { return false; }

 private:
  struct Frame {
    bool is_object;
    std::string path;
    std::set<std::string> keys;
    std::string last_key;
    std::size_t index = 0;
  };
  std::string child_path() {
    if (stack_.empty()) return "";
    Frame& f = stack_.back();
    return f.is_object ? join_key(f.path, f.last_key) : join_index(f.path, f.index++);
  }
  bool value() {
    if (!stack_.empty() && !stack_.back().is_object) stack_.back().index++;
    return true;
  }
  bool open(bool is_object) {
    std::string p = child_path();
    stack_.push_back(Frame{is_object, std::move(p), {}, {}, 0});
    return true;
  }
  bool close() {
    stack_.pop_back();
    return true;
  }
  std::vector<Frame> stack_;
};

}  // namespace

std::string dump_json(const json& j, int indent) {
  return j.dump(indent, ' ', false, json::error_handler_t::replace);
}

std::string json_error_text(const std::exception& e) {
  std::string what = e.what();
  auto pos = what.find("] ");
  return pos == std::string::npos ? what : what.substr(pos + 2);
}

std::optional<std::uint64_t> json_unsigned(const json& j) {
  if (j.is_number_unsigned()) return j.get<std::uint64_t>();
  if (j.is_number_integer() && j.get<std::int64_t>() >= 0) return static_cast<std::uint64_t>(j.get<std::int64_t>());
  return std::nullopt;
}

std::string join_key(const std::string& prefix, std::string_view key) {
  return prefix.empty() ? std::string(key) : cat(prefix, ".", key);
}

std::string join_index(const std::string& prefix, std::size_t index) { return cat(prefix, "[", index, "]"); }

json parse_json_strict(std::string_view text, const std::string& origin, ErrorKind kind) {
  json doc;
  try {
    doc = json::parse(text.begin(), text.end());
  } catch (const json::exception& e) {  // parse_error, and out_of_range for number overflow
    fail(kind, origin, ": invalid JSON: ", json_error_text(e));
  }
  DuplicateKeyCheck check;
  json::sax_parse(text.begin(), text.end(), &check);
  if (!check.duplicate_path.empty())
    fail(kind, origin, ": ", check.duplicate_path, ": duplicate key (JSON would silently keep only the last)");
  return doc;
}

}  // namespace pgolf
