// SPDX-License-Identifier: MIT
pragma solidity 0.8.30;

import {vm} from "../utils/Vm.sol";
import {vmExtra} from "./VmExtra.sol";

/// @notice Makes an invariant suite assert its own coverage, so that a handler whose calls all revert (a
/// broken `acceptJob`, a wrong precondition in the handler) fails the suite instead of leaving every
/// invariant vacuously green.
///
/// Each handler action counts its successes (`calls["x.ok"]`, and all of them in `calls["any.ok"]`) and
/// the error paths that matter. `afterInvariant` asserts two floors per counter: one for the run that just
/// ended (a run is only `depth` calls spread over a dozen actions, so only the total of successes is
/// floored there), and one for every `WINDOW` runs so far, for every path: after R runs a counter must have
/// reached `perWindow × ⌊R / WINDOW⌋`. Forge reverts every run to the post-setUp snapshot, so the running
/// totals live in the process environment (`vm.setEnv`), the one state that survives it; the runs of all
/// the suite's campaigns (parallel threads) add up in the same totals. They only grow: the environment is
/// read and written under Rust's lock, and a lost update under contention only lowers a total a little.
///
/// A sequence shorter than `MIN_STEPS` calls is a shrinker's replay of a failure, not a run: it neither
/// counts nor is checked, so coverage never hijacks the shrinking of a real failure.
abstract contract Coverage {
    struct Floor {
        string name;
        uint256 perRun;
        uint256 perWindow;
    }

    /// @notice Runs per coverage window.
    uint256 internal constant WINDOW = 128;
    /// @notice Fewest calls (`calls["steps"]`) of a sequence that counts as a run.
    uint256 internal constant MIN_STEPS = 20;

    /// @notice The handler's counter for `name`.
    function _counter(string memory name) internal view virtual returns (uint256);

    function _assertCoverage(string memory suite, Floor[] memory floors) internal {
        if (_counter("steps") < MIN_STEPS) return;
        string memory prefix = string.concat("INFERA_COVERAGE_", suite, "_");
        string memory runsKey = string.concat(prefix, "RUNS");
        uint256 runs = vmExtra.envOr(runsKey, uint256(0)) + 1;
        vmExtra.setEnv(runsKey, vm.toString(runs));
        uint256 windows = runs / WINDOW;
        for (uint256 i = 0; i < floors.length; ++i) {
            Floor memory floor = floors[i];
            uint256 count = _counter(floor.name);
            vm.assertGe(count, floor.perRun, string.concat("coverage of one run: ", floor.name));
            string memory key = string.concat(prefix, floor.name);
            uint256 total = vmExtra.envOr(key, uint256(0)) + count;
            vmExtra.setEnv(key, vm.toString(total));
            vm.assertGe(
                total,
                floor.perWindow * windows,
                string.concat("coverage of ", vm.toString(runs), " runs: ", floor.name)
            );
        }
    }
}
