#pragma once
// A small declared-options parser for the `fort` command: every option has a default and a help
// line, so `--help` is generated from the same table that parsing uses. Errors are fort::Error
// with the option's name, what was given and what was expected.
#include <fort/core.hpp>

#include <cmath>
#include <cstdint>
#include <exception>
#include <functional>
#include <iostream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

namespace fort_cli {

class Args {
 public:
  Args(std::string command, std::string summary) : command_(std::move(command)), summary_(std::move(summary)) {}

  /// An option taking a value; `def` is its default ("" = required unless `optional`).
  Args& value(const std::string& name, const std::string& def, const std::string& help, bool required = false) {
    options_.push_back({name, def, help, false, required});
    return *this;
  }
  Args& flag(const std::string& name, const std::string& help) {
    options_.push_back({name, "", help, true, false});
    return *this;
  }

  /// Parses argv[first..argc). Returns false when --help was asked for (help already printed).
  bool parse(int argc, char** argv, int first) {
    for (int i = first; i < argc; ++i) {
      std::string a = argv[i];
      if (a == "--help" || a == "-h") {
        std::cout << help();
        return false;
      }
      if (a.rfind("--", 0) != 0) fail("unexpected argument '" + a + "'; options start with --");
      std::string value;
      bool has_value = false;
      if (const auto eq = a.find('='); eq != std::string::npos) {
        value = a.substr(eq + 1);
        a = a.substr(0, eq);
        has_value = true;
      }
      const Option* o = find(a.substr(2));
      if (!o) fail("unknown option '" + a + "'; see `fort " + command_ + " --help`");
      if (o->is_flag) {
        if (has_value) fail("option " + a + " is a flag and takes no value");
        given_[o->name] = "1";
        continue;
      }
      if (!has_value) {
        if (i + 1 >= argc) fail("option " + a + " needs a value");
        value = argv[++i];
      }
      given_[o->name] = value;
    }
    for (const auto& o : options_)
      if (o.required && !given_.count(o.name)) fail("missing required option --" + o.name);
    return true;
  }

  bool has(const std::string& name) const { return given_.count(name) > 0; }
  bool flag_set(const std::string& name) const { return has(name); }

  std::string str(const std::string& name) const {
    const Option* o = find(name);
    if (!o) throw fort::Error("fort " + command_, "internal error: undeclared option --" + name);
    const auto it = given_.find(name);
    return it != given_.end() ? it->second : o->def;
  }

  double real(const std::string& name, double lo, double hi) const {
    const std::string s = str(name);
    std::size_t used = 0;
    double v = 0;
    try {
      v = std::stod(s, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (used != s.size() || s.empty() || !std::isfinite(v)) fail("--" + name + " must be a number, got '" + s + "'");
    if (v < lo || v > hi) fail(range_message(name, s, lo, hi));
    return v;
  }

  long long integer(const std::string& name, long long lo, long long hi) const {
    const std::string s = str(name);
    std::size_t used = 0;
    long long v = 0;
    try {
      v = std::stoll(s, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (used != s.size() || s.empty()) fail("--" + name + " must be an integer, got '" + s + "'");
    if (v < lo || v > hi) fail(range_message(name, s, double(lo), double(hi)));
    return v;
  }

  std::string choice(const std::string& name, const std::vector<std::string>& allowed) const {
    const std::string s = str(name);
    for (const auto& a : allowed)
      if (s == a) return s;
    std::string list;
    for (std::size_t k = 0; k < allowed.size(); ++k) list += (k ? (k + 1 == allowed.size() ? " or " : ", ") : "") + allowed[k];
    fail("--" + name + " must be " + list + ", got '" + s + "'");
  }

  std::string help() const {
    std::ostringstream out;
    out << "usage: fort " << command_ << " [options]\n\n" << summary_ << "\n\noptions:\n";
    for (const auto& o : options_) {
      std::string left = "  --" + o.name + (o.is_flag ? "" : " <value>");
      out << left << std::string(left.size() < 26 ? 26 - left.size() : 1, ' ') << o.help;
      if (o.required)
        out << " (required)";
      else if (!o.is_flag && !o.def.empty())
        out << " [default: " << o.def << "]";
      out << "\n";
    }
    return out.str();
  }

  [[noreturn]] void fail(const std::string& what) const { throw fort::Error("fort " + command_, what); }

 private:
  struct Option {
    std::string name, def, help;
    bool is_flag, required;
  };
  const Option* find(const std::string& name) const {
    for (const auto& o : options_)
      if (o.name == name) return &o;
    return nullptr;
  }
  static std::string range_message(const std::string& name, const std::string& s, double lo, double hi) {
    std::ostringstream m;
    m << "--" << name << " must be in [" << lo << ", " << hi << "], got " << s;
    return m.str();
  }
  std::string command_, summary_;
  std::vector<Option> options_;
  std::map<std::string, std::string> given_;
};

/// One subcommand of a multi-command program: name, one-line summary, entry point.
struct Command {
  std::string name, summary;
  std::function<int(int, char**)> run;
};

/// `program <command> [options]`: dispatches to the named command, prints the usage on --help
/// (exit 0) or on no/unknown command (exit 2), and turns an exception into a one-line error
/// (exit 1).
inline int run_commands(const std::string& program, int argc, char** argv, const std::vector<Command>& commands) {
  auto usage = [&](std::ostream& out) {
    out << "usage: " << program << " <command> [options]\n\ncommands:\n";
    for (const auto& c : commands) out << "  " << c.name << std::string(c.name.size() < 9 ? 9 - c.name.size() : 1, ' ') << c.summary << "\n";
    out << "\n`" << program << " <command> --help` lists the command's options.\n";
  };
  if (argc < 2) {
    usage(std::cerr);
    return 2;
  }
  const std::string cmd = argv[1];
  if (cmd == "--help" || cmd == "-h") {
    usage(std::cout);
    return 0;
  }
  try {
    for (const auto& c : commands)
      if (c.name == cmd) return c.run(argc, argv);
    std::string names;
    for (std::size_t i = 0; i < commands.size(); ++i)
      names += (i == 0 ? "" : i + 1 == commands.size() ? " or " : ", ") + commands[i].name;
    std::cerr << program << ": unknown command '" << cmd << "'; expected " << names << "\n";
    return 2;
  } catch (const std::exception& e) {
    const std::string msg = e.what();
    std::cerr << (msg.rfind(program + ": ", 0) == 0 ? "" : program + ": ") << msg << "\n";
    return 1;
  }
}

}  // namespace fort_cli
