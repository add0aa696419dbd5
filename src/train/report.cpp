#include "train/report.hpp"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <limits>
#include <sstream>

#include "common/strings.hpp"

namespace pgolf::train {

namespace {

std::string num(double v, int decimals) { return fixed(v, decimals); }

// Escapes text for SVG.
std::string esc(const std::string& s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      default: out += c;
    }
  }
  return out;
}

}  // namespace

void write_loss_svg(const fs::path& path, const std::string& title, const std::vector<StepRecord>& steps,
                    const std::vector<ValRecord>& validations) {
  const double W = 800, H = 480, left = 70, right = 20, top = 40, bottom = 55;
  double x_max = 1, y_min = std::numeric_limits<double>::infinity(), y_max = -y_min;
  for (const auto& s : steps) {
    x_max = std::max(x_max, static_cast<double>(s.step + 1));
    if (std::isfinite(s.loss)) {
      y_min = std::min(y_min, s.loss);
      y_max = std::max(y_max, s.loss);
    }
  }
  for (const auto& v : validations) {
    x_max = std::max(x_max, static_cast<double>(v.step));
    y_min = std::min(y_min, v.val_loss);
    y_max = std::max(y_max, v.val_loss);
  }
  if (!std::isfinite(y_min)) y_min = 0, y_max = 1;
  if (y_max - y_min < 1e-9) y_max = y_min + 1;
  const double pad = 0.05 * (y_max - y_min);
  y_min -= pad;
  y_max += pad;
  auto px = [&](double step) { return left + (W - left - right) * step / x_max; };
  auto py = [&](double loss) { return top + (H - top - bottom) * (1 - (loss - y_min) / (y_max - y_min)); };

  std::ostringstream svg;
  svg << "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" << W << "\" height=\"" << H << "\" viewBox=\"0 0 " << W
      << " " << H << "\" font-family=\"sans-serif\" font-size=\"12\">\n";
  svg << "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n";
  svg << "<text x=\"" << W / 2 << "\" y=\"22\" text-anchor=\"middle\" font-size=\"15\">" << esc(title) << "</text>\n";
  // Axes, ticks and grid.
  svg << "<line x1=\"" << left << "\" y1=\"" << H - bottom << "\" x2=\"" << W - right << "\" y2=\"" << H - bottom
      << "\" stroke=\"black\"/>\n";
  svg << "<line x1=\"" << left << "\" y1=\"" << top << "\" x2=\"" << left << "\" y2=\"" << H - bottom
      << "\" stroke=\"black\"/>\n";
  for (int i = 0; i <= 5; ++i) {
    const double sx = x_max * i / 5, sy = y_min + (y_max - y_min) * i / 5;
    svg << "<line x1=\"" << px(sx) << "\" y1=\"" << H - bottom << "\" x2=\"" << px(sx) << "\" y2=\"" << H - bottom + 5
        << "\" stroke=\"black\"/><text x=\"" << px(sx) << "\" y=\"" << H - bottom + 18 << "\" text-anchor=\"middle\">"
        << num(sx, 0) << "</text>\n";
    svg << "<line x1=\"" << left << "\" y1=\"" << py(sy) << "\" x2=\"" << W - right << "\" y2=\"" << py(sy)
        << "\" stroke=\"#e5e5e5\"/><text x=\"" << left - 6 << "\" y=\"" << py(sy) + 4 << "\" text-anchor=\"end\">"
        << num(sy, 2) << "</text>\n";
  }
  svg << "<text x=\"" << (left + W - right) / 2 << "\" y=\"" << H - 12 << "\" text-anchor=\"middle\">step</text>\n";
  svg << "<text x=\"16\" y=\"" << (top + H - bottom) / 2 << "\" text-anchor=\"middle\" transform=\"rotate(-90 16 "
      << (top + H - bottom) / 2 << ")\">loss (nats per token)</text>\n";
  // Curves.
  if (!steps.empty()) {
    svg << "<polyline fill=\"none\" stroke=\"#1f77b4\" stroke-width=\"1.5\" points=\"";
    for (const auto& s : steps)
      if (std::isfinite(s.loss)) svg << num(px(static_cast<double>(s.step + 1)), 1) << "," << num(py(s.loss), 1) << " ";
    svg << "\"/>\n";
  }
  if (!validations.empty()) {
    svg << "<polyline fill=\"none\" stroke=\"#ff7f0e\" stroke-width=\"1.5\" points=\"";
    for (const auto& v : validations) svg << num(px(static_cast<double>(v.step)), 1) << "," << num(py(v.val_loss), 1) << " ";
    svg << "\"/>\n";
    for (const auto& v : validations)
      svg << "<circle cx=\"" << num(px(static_cast<double>(v.step)), 1) << "\" cy=\"" << num(py(v.val_loss), 1)
          << "\" r=\"3\" fill=\"#ff7f0e\"/>\n";
  }
  // Legend.
  const double lx = W - right - 150, ly = top + 10;
  svg << "<line x1=\"" << lx << "\" y1=\"" << ly << "\" x2=\"" << lx + 20 << "\" y2=\"" << ly
      << "\" stroke=\"#1f77b4\" stroke-width=\"2\"/><text x=\"" << lx + 26 << "\" y=\"" << ly + 4 << "\">train loss</text>\n";
  svg << "<line x1=\"" << lx << "\" y1=\"" << ly + 18 << "\" x2=\"" << lx + 20 << "\" y2=\"" << ly + 18
      << "\" stroke=\"#ff7f0e\" stroke-width=\"2\"/><text x=\"" << lx + 26 << "\" y=\"" << ly + 22 << "\">val loss</text>\n";
  svg << "</svg>\n";
  write_file_atomic(path, svg.str());
}

double peak_rss_mib() {
  std::ifstream f("/proc/self/status");
  std::string line;
  while (std::getline(f, line))
    if (line.rfind("VmHWM:", 0) == 0) {
      std::istringstream in(line.substr(6));
      double kb = 0;
      in >> kb;
      return kb / 1024.0;
    }
  return -1;
}

}  // namespace pgolf::train
