import unittest

import kiln_sample


class UnitTests(unittest.TestCase):
    def test_add(self):
        self.assertEqual(kiln_sample.add(2, 3), 5)

    def test_slugify(self):
        self.assertEqual(kiln_sample.slugify("Login Form"), "login-form")
