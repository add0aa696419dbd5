#pragma once
// Which windows an evaluation runs and which of their positions it scores (SPEC 6.1, 6.2).
// Pure arithmetic over the target count, so the exactly-once property is testable alone.
#include <cstdint>
#include <vector>

namespace pgolf::eval {

// A window covers targets [start, start + length) of the val stream (inputs are the tokens
// one position earlier) and scores its positions [score_from, length).
struct Window {
  std::int64_t start = 0;
  int length = 0;
  int score_from = 0;
};

// SPEC 6.1: consecutive windows of `window` targets; a shorter last window takes the rest.
std::vector<Window> nonoverlapping_windows(std::int64_t targets, int window);

// SPEC 6.2: starts 0, S, 2S, ...; the first window scores everything, each later one only
// what no earlier window scored, and windows that would add nothing are skipped, so every
// target is scored exactly once. With `record_rescore` (the #549 quirk) every window after
// the first scores its last min(S, length) positions, so tail targets are scored repeatedly.
std::vector<Window> sliding_windows(std::int64_t targets, int window, int stride, bool record_rescore = false);

// How many times each target is scored by a plan (for audits and tests).
std::vector<int> score_counts(const std::vector<Window>& plan, std::int64_t targets);

}  // namespace pgolf::eval
