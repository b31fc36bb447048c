#pragma once
// Runs f and expects a fort::Error whose message contains every one of `parts`.
#include <catch2/catch.hpp>

#include <initializer_list>
#include <string>
#include <string_view>

#include "fort/core/error.hpp"

namespace fort::test {

template <class F>
void check_error(F&& f, std::initializer_list<std::string_view> parts) {
  try {
    f();
  } catch (const Error& e) {
    const std::string msg = e.what();
    INFO("message: " << msg);
    for (const std::string_view part : parts) CHECK(msg.find(part) != std::string::npos);
    return;
  }
  FAIL("expected fort::Error containing '" << *parts.begin() << "'");
}

}  // namespace fort::test
