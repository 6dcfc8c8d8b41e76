#pragma once

#include <gtest/gtest.h>

#include "harness/command.hpp"
#include "harness/conn.hpp"
#include "harness/env.hpp"
#include "harness/pgdog.hpp"
#include "harness/wait.hpp"

namespace pgdog::it {

// Base fixture: skips, with the reason, when integration/run did not set the environment up.
class IntegrationTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!env()) GTEST_SKIP() << missing_env();
  }
  static const Env& e() { return *env(); }
};

}  // namespace pgdog::it
