import importlib.metadata
import unittest

import kiln_sample


class FunctionalTests(unittest.TestCase):
    def test_installed_from_a_wheel(self):
        # The stage tests the installed artifact, not the checkout.
        self.assertIn("site-packages", kiln_sample.__file__)

    def test_version_carries_the_build_number(self):
        version = importlib.metadata.version("kiln-sample")
        self.assertTrue(version.startswith("1.4."), version)
