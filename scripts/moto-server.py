"""moto's server, with KMS's Sign honouring MessageType=DIGEST as AWS KMS does.

moto 5 ignores MessageType and always hashes the message again, so a signature over a
32-byte digest (how every Ethereum signer uses KMS: the digest is keccak256 of the
transaction, which KMS must not re-hash) verifies only against sha256(digest). AWS signs
the digest as given. This launcher adds exactly that and nothing else, then runs moto's own
command line with the arguments it was given; everything else moto serves is unchanged.
"""

import sys
import threading

from cryptography.hazmat.primitives.asymmetric import ec, utils
from moto.kms import responses, utils as kms_utils

# The patch leans on moto's KMS internals; a moto that moved them must fail here, loudly,
# not sign digests wrongly (scripts/tools.sh pins the version it was written against).
for name in ("_ECDSAPrivateKey__hash_algorithm", "sign"):
    if not hasattr(kms_utils.ECDSAPrivateKey, name):
        sys.exit(f"moto-server.py: moto's ECDSAPrivateKey has no {name}; update the launcher for this moto")
if not hasattr(kms_utils, "validate_signing_algorithm") or not hasattr(responses.KmsResponse, "sign"):
    sys.exit("moto-server.py: moto's KMS module changed; update the launcher for this moto")

_digest = threading.local()

_original_response_sign = responses.KmsResponse.sign
_original_key_sign = kms_utils.ECDSAPrivateKey.sign


def _response_sign(self):
    _digest.on = self._get_param("MessageType") == "DIGEST"
    try:
        return _original_response_sign(self)
    finally:
        _digest.on = False


def _key_sign(self, message, signing_algorithm):
    if not getattr(_digest, "on", False):
        return _original_key_sign(self, message, signing_algorithm)
    kms_utils.validate_signing_algorithm(signing_algorithm, self.valid_signing_algorithms)
    hash_algorithm = self._ECDSAPrivateKey__hash_algorithm(signing_algorithm)
    if len(message) != hash_algorithm.digest_size:
        raise responses.ValidationException(
            f"Digest is invalid length for algorithm {signing_algorithm}."
        )
    return self.private_key.sign(message, ec.ECDSA(utils.Prehashed(hash_algorithm)))


responses.KmsResponse.sign = _response_sign
kms_utils.ECDSAPrivateKey.sign = _key_sign

if __name__ == "__main__":
    from moto.server import main

    sys.exit(main(sys.argv[1:]))
