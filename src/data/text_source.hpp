#pragma once
// Documents from raw text: JSON lines with a "text" field (the challenge's docs_selected.jsonl
// layout) or plain text, either optionally xz-compressed.
#include <cstdint>
#include <string>

#include "common/xz_reader.hpp"

namespace pgolf::data {

enum class TextFormat { automatic, jsonl, txt };
// How plain text splits into documents: one per non-empty line, one per blank-line-separated
// paragraph, or the whole (non-empty) file as one document. CRLF line ends become LF.
enum class TxtDocuments { line, paragraph, file };

// The format implied by a file name (".jsonl[.xz]" / ".txt[.xz]"); Error(usage) if unclear.
TextFormat format_from_name(const fs::path& path);

class DocumentReader {
 public:
  DocumentReader(const fs::path& path, TextFormat format, TxtDocuments txt_documents);
  // Next document's text; false at end. Malformed JSON lines are Error(data) naming file:line.
  bool next(std::string& text);
  std::uint64_t compressed_bytes_read() const { return lines_.compressed_bytes_read(); }
  std::uint64_t file_size() const { return lines_.file_size(); }
  const fs::path& path() const { return path_; }

 private:
  bool next_jsonl(std::string& text);
  bool next_txt(std::string& text);
  bool next_txt_line();
  fs::path path_;
  TextFormat format_;
  TxtDocuments txt_documents_;
  LineReader lines_;
  std::string line_;
  bool file_done_ = false;
};

}  // namespace pgolf::data
