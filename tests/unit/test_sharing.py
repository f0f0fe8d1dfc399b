from oauth2_introspection.sharing import Shared


def test_equal_values_come_back_as_one_object() -> None:
    shared = Shared()
    a = shared((b"X-Credential-Client-ID", b"app"))
    b = shared((b"X-Credential-Client-ID", b"app"))
    assert a is b
    assert shared((b"X-Credential-Client-ID", b"other")) is not a
    assert shared.get(("k",), {"x": 1}) is shared.get(("k",), {"x": 1})


def test_it_starts_over_when_full_and_old_objects_stay_valid() -> None:
    shared = Shared(maxsize=3)
    first = shared(("v", 0))
    for i in range(1, 3):
        shared(("v", i))
    assert len(shared) == 3
    shared(("v", 3))  # full: starts over
    assert len(shared) == 1
    assert first == ("v", 0)  # what was handed out stays as it was
    assert shared(("v", 0)) == first and len(shared) == 2
