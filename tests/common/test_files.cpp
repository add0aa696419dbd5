#include <gtest/gtest.h>

#include "common/error.hpp"
#include "common/files.hpp"
#include "support/test_support.hpp"

namespace pgolf {
namespace {

using test::TempDir;

TEST(AtomicFileWriter, CommitReplacesTheFileAndLeavesNoTemporary) {
  TempDir dir;
  const fs::path target = dir / "out.txt";
  test::write_bytes(target, "old");
  {
    AtomicFileWriter w(target);
    w.write(std::string_view("new contents"));
    EXPECT_EQ(test::read_bytes(target), "old") << "the target must not change before commit";
    w.commit();
  }
  EXPECT_EQ(test::read_bytes(target), "new contents");
  int entries = 0;
  for ([[maybe_unused]] const auto& e : fs::directory_iterator(dir.path())) ++entries;
  EXPECT_EQ(entries, 1) << "no temporary file may remain";
}

TEST(AtomicFileWriter, AbandonedWriteKeepsTheOldFileAndRemovesTheTemporary) {
  TempDir dir;
  const fs::path target = dir / "out.txt";
  test::write_bytes(target, "old");
  {
    AtomicFileWriter w(target);
    w.write(std::string_view("partial"));
  }  // destroyed without commit, as when an exception unwinds
  EXPECT_EQ(test::read_bytes(target), "old");
  int entries = 0;
  for ([[maybe_unused]] const auto& e : fs::directory_iterator(dir.path())) ++entries;
  EXPECT_EQ(entries, 1);
}

TEST(AtomicFileWriter, CreatesParentDirectories) {
  TempDir dir;
  write_file_atomic(dir / "a/b/c.txt", std::string_view("x"));
  EXPECT_EQ(test::read_bytes(dir / "a/b/c.txt"), "x");
}

TEST(ReadFile, RejectsDirectoriesMissingFilesAndOversizedFiles) {
  TempDir dir;
  try {
    read_file(dir.path());
    FAIL() << "reading a directory must fail";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::io);
    EXPECT_NE(std::string(e.what()).find(dir.path().string()), std::string::npos);
  }
  EXPECT_THROW(read_file(dir / "missing"), Error);
  test::write_bytes(dir / "big", std::string(100, 'x'));
  EXPECT_THROW(read_file(dir / "big", 99), Error);
  EXPECT_EQ(read_file(dir / "big", 100).size(), 100u);
}

TEST(MappedFile, MapsContentsAndEmptyFiles) {
  TempDir dir;
  test::write_bytes(dir / "f", "hello");
  MappedFile m(dir / "f");
  ASSERT_EQ(m.size(), 5u);
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(m.bytes().data()), 5), "hello");
  test::write_bytes(dir / "empty", "");
  MappedFile e(dir / "empty");
  EXPECT_EQ(e.size(), 0u);
  EXPECT_TRUE(e.bytes().empty());
}

TEST(GlobSorted, ReturnsMatchesInBytewiseOrder) {
  TempDir dir;
  for (const char* n : {"s_000002.bin", "s_000000.bin", "s_000010.bin", "other.txt"}) test::write_bytes(dir / n, "");
  auto found = glob_sorted((dir / "s_*.bin").string());
  ASSERT_EQ(found.size(), 3u);
  EXPECT_EQ(found[0].filename(), "s_000000.bin");
  EXPECT_EQ(found[1].filename(), "s_000002.bin");
  EXPECT_EQ(found[2].filename(), "s_000010.bin");
  EXPECT_TRUE(glob_sorted((dir / "none_*.bin").string()).empty());
}

}  // namespace
}  // namespace pgolf
