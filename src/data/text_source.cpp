#include "data/text_source.hpp"

#include "common/error.hpp"
#include "common/json.hpp"
#include "common/strings.hpp"

namespace pgolf::data {

TextFormat format_from_name(const fs::path& path) {
  std::string name = path.filename().string();
  if (name.size() > 3 && name.ends_with(".xz")) name.resize(name.size() - 3);
  if (name.ends_with(".jsonl") || name.ends_with(".json")) return TextFormat::jsonl;
  if (name.ends_with(".txt")) return TextFormat::txt;
  fail(ErrorKind::usage, path.string(), ": cannot tell the text format from the file name; pass --format jsonl or txt");
}

DocumentReader::DocumentReader(const fs::path& path, TextFormat format, TxtDocuments txt_documents)
    : path_(path), format_(format == TextFormat::automatic ? format_from_name(path) : format),
      txt_documents_(txt_documents), lines_(path) {}

bool DocumentReader::next(std::string& text) {
  return format_ == TextFormat::jsonl ? next_jsonl(text) : next_txt(text);
}

bool DocumentReader::next_jsonl(std::string& text) {
  if (!lines_.next(line_)) return false;
  if (trim(line_).empty()) {
    // Blank lines are tolerated only at the end of the file (a trailing "\n\n").
    const std::int64_t blank = lines_.line_number();
    while (lines_.next(line_))
      if (!trim(line_).empty())
        fail(ErrorKind::data, path_.string(), ":", blank, ": empty line, expected a JSON object with a \"text\" field");
    return false;
  }
  const std::string where = cat(path_.string(), ":", lines_.line_number());
  json doc;
  try {
    doc = json::parse(line_);
  } catch (const json::exception& e) {
    fail(ErrorKind::data, where, ": invalid JSON: ", json_error_text(e));
  }
  if (!doc.is_object()) fail(ErrorKind::data, where, ": expected a JSON object with a \"text\" field");
  auto it = doc.find("text");
  if (it == doc.end()) fail(ErrorKind::data, where, ": no \"text\" field");
  if (!it->is_string()) fail(ErrorKind::data, where, ": \"text\" is not a string");
  text = it->get<std::string>();
  return true;
}

bool DocumentReader::next_txt_line() {
  if (!lines_.next(line_)) return false;
  if (!line_.empty() && line_.back() == '\r') line_.pop_back();  // CRLF text
  return true;
}

bool DocumentReader::next_txt(std::string& text) {
  switch (txt_documents_) {
    case TxtDocuments::line:
      while (next_txt_line())
        if (!trim(line_).empty()) {
          text = line_;
          return true;
        }
      return false;
    case TxtDocuments::paragraph: {
      text.clear();
      bool any = false;
      while (next_txt_line()) {
        if (trim(line_).empty()) {
          if (any) return true;
          continue;
        }
        if (any) text.push_back('\n');
        text += line_;
        any = true;
      }
      return any;
    }
    case TxtDocuments::file: {
      if (file_done_) return false;
      file_done_ = true;
      text.clear();
      bool first = true;
      while (next_txt_line()) {
        if (!first) text.push_back('\n');
        text += line_;
        first = false;
      }
      return !text.empty();
    }
  }
  return false;
}

}  // namespace pgolf::data
