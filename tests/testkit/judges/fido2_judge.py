"""python-fido2 as the judge of a virtual FIDO key, served on a pipe or on /dev/hidrawN.

Usage: fido2_judge.py DEVICE_COMMAND...   (the device speaks 64-byte CTAPHID reports on its
stdin/stdout and takes a touch when the file named by its --button option appears; this
script appends --button itself.)
   or: fido2_judge.py --hidraw BUTTON_FILE   (the one FIDO key python-fido2's
CtapHidDevice.list_devices() finds over hidraw; creating BUTTON_FILE presses its button.)
   or: fido2_judge.py --output BUTTON_FILE RP_ID CREDENTIAL_HEX SALT_HEX   (over hidraw: the
hmac-secret output1, without UV, of a credential someone else made, e.g. tapcred's vault
unlocker; prints {"output1": HEX}.)

It drives the key only through python-fido2's public classes: CtapHidDevice over a custom
connection, Ctap2, ClientPin with PIN protocols 1 and 2, and HmacSecretExtension for the
salt/output encryption. Every check python-fido2 makes on the wire (nonces, channel ids,
keep-alives, PIN-protocol KDFs and MACs, attestation and assertion signatures) is a check on
the device. Prints one JSON object of results on stdout; exits non-zero on the first
failure, naming the step.
"""

import json
import os
import select
import subprocess
import sys
import tempfile

from fido2.attestation import PackedAttestation
from fido2.ctap import CtapError
from fido2.ctap2 import Ctap2
from fido2.ctap2.extensions import HmacSecretExtension
from fido2.ctap2.pin import ClientPin, PinProtocolV1, PinProtocolV2
from fido2.hid import CTAPHID, CtapHidDevice
from fido2.utils import websafe_decode
from fido2.hid.base import CtapHidConnection, HidDescriptor
from fido2.webauthn import (
    PublicKeyCredentialCreationOptions,
    PublicKeyCredentialDescriptor,
    PublicKeyCredentialParameters,
    PublicKeyCredentialRequestOptions,
    PublicKeyCredentialRpEntity,
    PublicKeyCredentialType,
    PublicKeyCredentialUserEntity,
)

RP_ID = "tapcred.judge"
PIN = "4711-judge"
READ_TIMEOUT_S = 10


class PipeConnection(CtapHidConnection):
    def __init__(self, proc):
        self.proc = proc

    def write_packet(self, data):
        assert len(data) == 64, len(data)
        self.proc.stdin.write(data)
        self.proc.stdin.flush()

    def read_packet(self):
        out = self.proc.stdout
        buf = b""
        while len(buf) < 64:
            ready, _, _ = select.select([out], [], [], READ_TIMEOUT_S)
            if not ready:
                raise TimeoutError("the device sent no report for %d s" % READ_TIMEOUT_S)
            chunk = os.read(out.fileno(), 64 - len(buf))
            if not chunk:
                raise EOFError("the device closed its output")
            buf += chunk
        return buf

    def close(self):
        self.proc.stdin.close()


def step(name):
    def wrap(f):
        def run(*a, **k):
            try:
                return f(*a, **k)
            except Exception as e:  # report which step failed, then fail
                print(f"judge step '{name}' failed: {type(e).__name__}: {e}", file=sys.stderr)
                raise SystemExit(1)

        return run

    return wrap


def open_hidraw():
    devs = list(CtapHidDevice.list_devices())
    assert len(devs) == 1, "expected one FIDO HID device, found %r" % devs
    d = devs[0]
    assert (d.descriptor.vid, d.descriptor.pid) == (0x1050, 0x0407), d.descriptor
    return d


def output_of(button, rp_id, credential_hex, salt_hex):
    """hmac-secret output1 (no UV, PIN protocol 2 for the salt exchange) of an existing
    credential, through python-fido2's own extension processing."""
    def press(status):
        if int(status) == 2:  # user presence needed
            open(button, "w").close()

    dev = step("CTAPHID INIT over hidraw")(open_hidraw)()
    ctap = Ctap2(dev)
    cred_id = bytes.fromhex(credential_hex)
    cred = PublicKeyCredentialDescriptor(type=PublicKeyCredentialType.PUBLIC_KEY, id=cred_id)
    options = PublicKeyCredentialRequestOptions(
        challenge=os.urandom(32), rp_id=rp_id, allow_credentials=[cred],
        extensions={"hmacGetSecret": {"salt1": bytes.fromhex(salt_hex)}},
    )
    processor = HmacSecretExtension(allow_hmac_secret=True).get_assertion(ctap, options, PinProtocolV2())
    inputs = processor.prepare_inputs(cred, None)
    a = step("getAssertion with hmac-secret")(ctap.get_assertion)(
        rp_id, os.urandom(32), [{"type": "public-key", "id": cred_id}],
        extensions=inputs, on_keepalive=press,
    )
    output1 = processor.prepare_outputs(a, None)["hmacGetSecret"]["output1"]
    if isinstance(output1, str):  # the JSON form: base64url
        output1 = websafe_decode(output1)
    dev.close()
    print(json.dumps({"output1": output1.hex()}))


def main():
    if sys.argv[1] == "--output":
        output_of(*sys.argv[2:6])
        return
    if sys.argv[1] == "--hidraw":
        button = sys.argv[2]
        proc = None
    else:
        button = os.path.join(tempfile.mkdtemp(prefix="fido-judge-"), "button")
        proc = subprocess.Popen(
            sys.argv[1:] + ["--button", button],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
    keepalives = []

    def press(status):
        keepalives.append(int(status))
        if int(status) == 2:  # user presence needed
            open(button, "w").close()

    result = {}
    if proc is None:
        dev = step("CTAPHID INIT over hidraw")(open_hidraw)()
    else:
        desc = HidDescriptor("pipe", 0x1050, 0x0407, 64, 64, "virtual", None)
        dev = step("CTAPHID INIT")(CtapHidDevice)(desc, PipeConnection(proc))
    result["ctaphid_version"] = dev.version
    result["capabilities"] = dev.capabilities

    @step("PING")
    def ping():
        msg = os.urandom(200)  # several continuation packets each way
        assert dev.ping(msg) == msg, "echo differs"

    ping()

    @step("WINK")
    def wink():
        dev.wink()

    wink()

    @step("MSG answered with ERR invalid command")
    def msg():
        try:
            dev.call(CTAPHID.MSG, b"\x00\x03\x00\x00\x00")
        except CtapError as e:
            assert e.code == CtapError.ERR.INVALID_COMMAND, e
            return
        raise AssertionError("MSG answered")

    msg()

    ctap = step("getInfo")(Ctap2)(dev)
    info = ctap.info

    @step("getInfo contents")
    def check_info():
        assert "FIDO_2_0" in info.versions and "FIDO_2_1" in info.versions, info.versions
        assert "hmac-secret" in info.extensions, info.extensions
        assert list(info.pin_uv_protocols) == [2, 1], info.pin_uv_protocols
        assert info.options.get("clientPin") is False, info.options
        assert info.options.get("up") is True, info.options
        assert len(info.aaguid) == 16
        assert info.max_msg_size >= 1024, info.max_msg_size

    check_info()
    result["versions"] = list(info.versions)

    salt = os.urandom(32)
    result["salt"] = salt.hex()
    ext = HmacSecretExtension(allow_hmac_secret=True)
    rp = PublicKeyCredentialRpEntity(name="judge", id=RP_ID)
    user = PublicKeyCredentialUserEntity(name="judge", id=b"judge-user")
    params = [PublicKeyCredentialParameters(type=PublicKeyCredentialType.PUBLIC_KEY, alg=-7)]

    @step("makeCredential with hmac-secret")
    def make_credential(pin_protocol):
        options = PublicKeyCredentialCreationOptions(
            rp=rp, user=user, challenge=os.urandom(32), pub_key_cred_params=params,
            extensions={"hmacCreateSecret": True},
        )
        processor = ext.make_credential(ctap, options, pin_protocol)
        inputs = processor.prepare_inputs(None)
        cdh = os.urandom(32)
        att = ctap.make_credential(
            cdh,
            {"id": RP_ID, "name": "judge"},
            {"id": b"judge-user", "name": "judge"},
            [{"type": "public-key", "alg": -7}],
            extensions=inputs,
            on_keepalive=press,
        )
        assert att.fmt == "packed", att.fmt
        PackedAttestation().verify(att.att_stmt, att.auth_data, cdh)
        assert att.auth_data.is_user_present()
        assert not att.auth_data.is_user_verified()
        outputs = processor.prepare_outputs(att, None)
        assert outputs == {"hmacCreateSecret": True}, outputs
        return att.auth_data.credential_data

    cred = make_credential(PinProtocolV2())
    result["credential_id"] = cred.credential_id.hex()
    allow = [PublicKeyCredentialDescriptor(type=PublicKeyCredentialType.PUBLIC_KEY, id=cred.credential_id)]
    # Ctap2 takes CBOR-ready maps (python-fido2's client converts its descriptors the same way).
    allow_cbor = [{"type": "public-key", "id": cred.credential_id}]

    def check_signature(assertion, cdh):
        cred.public_key.verify(assertion.auth_data + cdh, assertion.signature)

    @step("getAssertion up=false probe")
    def probe():
        cdh = os.urandom(32)
        before = len(keepalives)
        a = ctap.get_assertion(RP_ID, cdh, allow_cbor, options={"up": False})
        assert not a.auth_data.is_user_present(), "UP set without a touch"
        assert len(keepalives) == before, "the probe asked for a touch"
        check_signature(a, cdh)
        other = [{"type": "public-key", "id": os.urandom(32)}]
        try:
            ctap.get_assertion(RP_ID, cdh, other, options={"up": False})
        except CtapError as e:
            assert e.code == CtapError.ERR.NO_CREDENTIALS, e
        else:
            raise AssertionError("a foreign credential id was accepted")

    probe()

    def hmac_secret(pin_protocol, token):
        options = PublicKeyCredentialRequestOptions(
            challenge=os.urandom(32), rp_id=RP_ID, allow_credentials=allow,
            extensions={"hmacGetSecret": {"salt1": salt}},
        )
        processor = ext.get_assertion(ctap, options, pin_protocol)
        inputs = processor.prepare_inputs(allow[0], token)
        cdh = os.urandom(32)
        kwargs = {}
        if token is not None:
            kwargs = dict(
                pin_uv_param=pin_protocol.authenticate(token, cdh),
                pin_uv_protocol=pin_protocol.VERSION,
            )
        a = ctap.get_assertion(RP_ID, cdh, allow_cbor, extensions=inputs, on_keepalive=press, **kwargs)
        check_signature(a, cdh)
        assert a.auth_data.is_user_present()
        assert a.auth_data.is_user_verified() == (token is not None)
        out = processor.prepare_outputs(a, token)
        output1 = out["hmacGetSecret"]["output1"]
        if isinstance(output1, str):  # the JSON form: base64url
            output1 = websafe_decode(output1)
        assert len(output1) == 32, len(output1)
        return output1.hex()

    result["no_uv_p2"] = step("hmac-secret, no UV, protocol 2")(hmac_secret)(PinProtocolV2(), None)
    result["no_uv_p1"] = step("hmac-secret, no UV, protocol 1")(hmac_secret)(PinProtocolV1(), None)

    @step("setPIN (protocol 1)")
    def set_pin():
        ClientPin(ctap, PinProtocolV1()).set_pin(PIN)
        assert ctap.get_info().options.get("clientPin") is True

    set_pin()

    perms = ClientPin.PERMISSION.MAKE_CREDENTIAL | ClientPin.PERMISSION.GET_ASSERTION
    for name, proto in (("p1", PinProtocolV1()), ("p2", PinProtocolV2())):
        client_pin = ClientPin(ctap, proto)

        @step(f"getPinUvAuthToken, protocol {proto.VERSION}")
        def token():
            return client_pin.get_pin_token(PIN, perms, RP_ID)

        t = token()
        result[f"uv_{name}"] = step(f"hmac-secret with UV, protocol {proto.VERSION}")(hmac_secret)(proto, t)

        @step(f"legacy getPinToken, protocol {proto.VERSION}")
        def legacy():
            return client_pin.get_pin_token(PIN)

        result[f"uv_legacy_{name}"] = step(f"hmac-secret with a legacy token, protocol {proto.VERSION}")(hmac_secret)(proto, legacy())

    @step("wrong PIN costs a retry")
    def wrong_pin():
        client_pin = ClientPin(ctap, PinProtocolV2())
        before = client_pin.get_pin_retries()[0]
        try:
            client_pin.get_pin_token(PIN + "x", perms, RP_ID)
        except CtapError as e:
            assert e.code == CtapError.ERR.PIN_INVALID, e
        else:
            raise AssertionError("a wrong PIN gave a token")
        after = client_pin.get_pin_retries()[0]
        assert after == before - 1, (before, after)
        # A right PIN resets the counter.
        client_pin.get_pin_token(PIN, perms, RP_ID)
        assert client_pin.get_pin_retries()[0] == before
        return before, after

    result["retries"] = list(wrong_pin())

    @step("changePIN (protocol 2)")
    def change_pin():
        ClientPin(ctap, PinProtocolV2()).change_pin(PIN, PIN + "2")
        try:
            ClientPin(ctap, PinProtocolV2()).get_pin_token(PIN, perms, RP_ID)
        except CtapError as e:
            assert e.code == CtapError.ERR.PIN_INVALID, e
        else:
            raise AssertionError("the old PIN still works")
        ClientPin(ctap, PinProtocolV1()).get_pin_token(PIN + "2", perms, RP_ID)

    change_pin()

    result["no_uv_after_pin"] = step("hmac-secret, no UV, after a PIN is set")(hmac_secret)(PinProtocolV2(), None)
    result["keepalive_statuses"] = sorted(set(keepalives))

    @step("three wrong PINs block PIN auth until a power cycle")
    def block():
        client_pin = ClientPin(ctap, PinProtocolV1())
        codes = []
        for _ in range(3):
            try:
                client_pin.get_pin_token(PIN + "wrong", perms, RP_ID)
            except CtapError as e:
                codes.append(int(e.code))
        try:
            client_pin.get_pin_token(PIN + "2", perms, RP_ID)
        except CtapError as e:
            codes.append(int(e.code))
        return codes, client_pin.get_pin_retries()[0]

    codes, left = block()
    result["blocking_codes"] = codes
    result["retries_left"] = left

    dev.close()
    if proc is None:
        print(json.dumps(result))
        return
    proc.wait(timeout=10)
    if proc.returncode != 0:
        print(f"judge: the device exited with {proc.returncode}", file=sys.stderr)
        raise SystemExit(1)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
