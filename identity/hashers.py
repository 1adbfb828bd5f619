"""Argon2id with parameters chosen for the API pod's memory limit (see README, "Password hashing")."""

from django.contrib.auth.hashers import Argon2PasswordHasher


class TunedArgon2PasswordHasher(Argon2PasswordHasher):
    # 19 MiB, 2 passes, 1 lane: OWASP's first Argon2id recommendation. With 2 gunicorn workers x 4 threads a
    # pod hashes at most 8 passwords at once: 8 x 19 MiB = 152 MiB, well inside the 512 MiB limit.
    time_cost = 2
    memory_cost = 19 * 1024
    parallelism = 1
