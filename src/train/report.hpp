#pragma once
// What a run leaves behind besides checkpoints: a loss-curve plot (SVG, written by pgolf
// itself) and the peak memory figure for results.json.
#include <string>
#include <vector>

#include "common/files.hpp"
#include "train/trainer.hpp"

namespace pgolf::train {

// Train loss per step and val loss at each validation, with labelled axes; atomic write.
void write_loss_svg(const fs::path& path, const std::string& title, const std::vector<StepRecord>& steps,
                    const std::vector<ValRecord>& validations);

// Peak resident memory of this process in MiB (VmHWM), or -1 when unknown.
double peak_rss_mib();

}  // namespace pgolf::train
