import sys
import textwrap

import pytest

from batchlab import WorkloadError, get_workload, list_workloads
from batchlab.workloads import BUILTIN_WORKLOADS


def test_unknown_workload_lists_the_valid_names():
    with pytest.raises(WorkloadError) as info:
        get_workload("mnist-cnn")
    for name in BUILTIN_WORKLOADS:
        assert name in str(info.value)


def test_unknown_parameter_names_it_and_the_accepted_ones():
    with pytest.raises(WorkloadError, match="'dimension'.*it takes: dim"):
        get_workload("linreg", {"dimension": 3})


def test_invalid_parameter_value_is_a_workload_error():
    with pytest.raises(WorkloadError, match="dim must be a positive integer"):
        get_workload("linreg", {"dim": 0})


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("no_such_module_xyz:make", "could not import module 'no_such_module_xyz'"),
        ("os:no_such_function", "module 'os' has no attribute 'no_such_function'"),
        ("os:sep", "is not callable"),
        (":make", "must look like 'module:function'"),
    ],
)
def test_module_function_errors_say_which_part_failed(spec, message):
    with pytest.raises(WorkloadError, match=message):
        get_workload(spec)


def test_user_workload_from_module_function(tmp_path, monkeypatch):
    (tmp_path / "my_workload.py").write_text(
        textwrap.dedent(
            """
            from batchlab.workloads.linreg import LinRegWorkload

            def make(dim=4):
                workload = LinRegWorkload(dim=dim)
                workload.name = "mine"
                return workload

            def broken():
                return object()
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    workload = get_workload("my_workload:make", {"dim": 3})
    assert workload.name == "mine" and workload.dim == 3
    with pytest.raises(WorkloadError, match="lacks name, target"):
        get_workload("my_workload:broken")
    sys.modules.pop("my_workload", None)


def test_list_workloads_describes_every_builtin_without_building_data():
    infos = {info.name: info for info in list_workloads()}
    assert set(infos) == set(BUILTIN_WORKLOADS)
    assert infos["mnist1d-cnn"].parameters["num_train"] == 4000
    assert infos["nqm"].target.metric == "loss"
