"""tap.py - runs a unittest module and also prints one TAP line per test on
standard output, so that the test command counts Python tests the way it
counts Criterion's."""

import sys
import unittest


class TapResult(unittest.TextTestResult):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.n = 0

    def _tap(self, test, ok, note=""):
        self.n += 1
        print("%s %d - %s%s" % ("ok" if ok else "not ok", self.n, test.id(), note), flush=True)

    def addSuccess(self, test):
        super().addSuccess(test)
        self._tap(test, True)

    def addFailure(self, test, err):
        super().addFailure(test, err)
        self._tap(test, False)

    def addError(self, test, err):
        super().addError(test, err)
        self._tap(test, False)

    def addSkip(self, test, reason):
        super().addSkip(test, reason)
        self._tap(test, True, " # SKIP %s" % reason)


def main():
    """unittest.main, with TAP lines on stdout and the usual report on stderr."""
    runner = unittest.TextTestRunner(stream=sys.stderr, verbosity=2, resultclass=TapResult)
    unittest.main(module="__main__", testRunner=runner)
