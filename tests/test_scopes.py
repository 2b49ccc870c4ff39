"""Scope rules on single statements: what each top-level statement reads, writes and defers."""

from __future__ import annotations

import ast

from nbprod.analysis.scopes import Statement, scan_statements


def scan(source: str) -> Statement:
    (statement,) = scan_statements(ast.parse(source).body)
    return statement


def scan_all(source: str) -> list[Statement]:
    return scan_statements(ast.parse(source).body)


def test_assignment_reads_its_value_before_binding_the_target() -> None:
    statement = scan("x = x + 1")
    assert statement.reads == {"x": 1}
    assert statement.writes == {"x": 1}


def test_chained_and_unpacking_targets_are_all_written() -> None:
    assert set(scan("a = b = c").writes) == {"a", "b"}
    assert set(scan("a, (b, *c) = t").writes) == {"a", "b", "c"}
    assert set(scan("a, (b, *c) = t").reads) == {"t"}


def test_reads_record_the_first_line_they_happen_on() -> None:
    statement = scan("if ready:\n    y = 1\nelse:\n    y = source")
    assert statement.reads == {"ready": 1, "source": 4}


def test_for_target_is_written_not_read() -> None:
    statement = scan("for row in rows:\n    use(row)")
    assert set(statement.reads) == {"rows", "use"}
    assert set(statement.writes) == {"row"}


def test_for_loop_body_reads_a_name_it_rebinds() -> None:
    statement = scan("for i in range(3):\n    total = total + i")
    assert statement.reads == {"range": 1, "total": 2}
    assert set(statement.writes) == {"i", "total"}


def test_with_target_is_written_and_attribute_target_mutates() -> None:
    statement = scan("with open(path) as fh, lock as (a, cfg.b):\n    data = fh.read()")
    assert set(statement.reads) == {"open", "path", "lock", "cfg"}
    assert set(statement.writes) == {"fh", "a", "data"}
    assert set(statement.mutates) == {"cfg"}


def test_walrus_target_is_written_in_the_enclosing_scope() -> None:
    statement = scan("if (n := len(xs)) > 3:\n    big = n")
    assert set(statement.reads) == {"len", "xs"}
    assert set(statement.writes) == {"n", "big"}


def test_walrus_inside_a_comprehension_leaks_to_the_module() -> None:
    statement = scan("[last := v for v in values]")
    assert set(statement.reads) == {"values"}
    assert set(statement.writes) == {"last"}


def test_comprehension_variables_stay_inside_the_comprehension() -> None:
    statement = scan("y = [a * k for a in items if a > limit]")
    assert set(statement.reads) == {"items", "k", "limit"}
    assert set(statement.writes) == {"y"}


def test_comprehension_variable_is_not_visible_after_it() -> None:
    first, second = scan_all("[z for z in range(3)]\nz")
    assert "z" not in first.writes
    assert second.reads == {"z": 2}


def test_dict_comprehension_and_nested_generators() -> None:
    assert set(scan("m = {k: v for k, v in d.items()}").reads) == {"d"}
    statement = scan("x = [i for i in range(n) for j in other(i)]")
    assert set(statement.reads) == {"range", "n", "other"}


def test_lambda_assigned_to_a_name_defers_its_globals() -> None:
    statement = scan("scale = lambda v: v * factor")
    assert statement.reads == {}
    assert statement.lazy == {"scale": {"factor"}}


def test_lambda_called_in_place_reads_its_globals_now() -> None:
    statement = scan("g = (lambda: q)()")
    assert set(statement.reads) == {"q"}
    assert statement.lazy == {}


def test_lambda_defaults_are_read_when_defined() -> None:
    statement = scan("f = lambda a, b=dflt: a + b + other")
    assert set(statement.reads) == {"dflt"}
    assert statement.lazy == {"f": {"other"}}


def test_function_body_globals_are_lazy_not_read() -> None:
    statement = scan("def f(x):\n    y = x + g\n    return helper(y)")
    assert statement.reads == {}
    assert statement.writes == {"f": 1}
    assert statement.lazy == {"f": {"g", "helper"}}


def test_function_defaults_decorators_and_annotations_are_read_when_defined() -> None:
    statement = scan("@decor\ndef f(x: T = dflt) -> R:\n    return x + later")
    assert set(statement.reads) == {"decor", "T", "dflt", "R"}
    assert statement.lazy == {"f": {"later"}}


def test_function_locals_shadow_globals_even_when_assigned_after_use() -> None:
    statement = scan("def f():\n    print(val)\n    val = 2")
    assert statement.lazy == {"f": {"print"}}


def test_function_local_loop_and_with_targets_are_not_globals() -> None:
    statement = scan(
        "def f():\n    for k in ks:\n        pass\n    with ctx() as c:\n        return k, c"
    )
    assert statement.lazy == {"f": {"ks", "ctx"}}


def test_nested_function_globals_belong_to_the_outer_function() -> None:
    statement = scan("def f():\n    def inner():\n        return outer_g\n    return inner()")
    assert statement.lazy == {"f": {"outer_g"}}


def test_comprehension_inside_a_function_reads_globals_lazily() -> None:
    statement = scan("def f():\n    return [c * w for c in cols]")
    assert statement.lazy == {"f": {"cols", "w"}}


def test_function_import_is_local_to_the_function() -> None:
    statement = scan("def f():\n    import numpy as np\n    return np.zeros(n)")
    assert statement.lazy == {"f": {"n"}}
    assert statement.imports == []


def test_nonlocal_binds_in_the_enclosing_function() -> None:
    source = "def f():\n    x = 1\n    def g():\n        nonlocal x\n        x = 2\n    return x"
    assert scan(source).lazy == {"f": set()}


def test_global_declaration_reads_and_writes_the_module_name() -> None:
    statement = scan("def bump():\n    global counter\n    counter += 1")
    assert statement.lazy == {"bump": {"counter"}}
    assert statement.global_writes == {"bump": {"counter"}}


def test_global_declaration_without_assignment_only_reads() -> None:
    statement = scan("def f():\n    global cfg\n    return cfg['a']")
    assert statement.lazy == {"f": {"cfg"}}
    assert statement.global_writes == {}


def test_global_at_module_level_changes_nothing() -> None:
    statement = scan("global x")
    assert (statement.reads, statement.writes) == ({}, {})


def test_class_body_reads_now_and_methods_read_later() -> None:
    source = (
        "class C(Base, metaclass=Meta):\n"
        "    k = base_k\n"
        "    def m(self):\n"
        "        return helper(self.k)"
    )
    statement = scan(source)
    assert set(statement.reads) == {"Base", "Meta", "base_k"}
    assert statement.writes == {"C": 1}
    assert statement.lazy == {"C": {"helper"}}


def test_class_attributes_are_not_globals_of_the_class_body() -> None:
    statement = scan("class C:\n    a = 1\n    b = a + 1")
    assert statement.reads == {}


def test_del_reads_and_unbinds_the_name() -> None:
    statement = scan("del a")
    assert statement.reads == {"a": 1}
    assert statement.writes == {}
    assert statement.deletes == {"a"}


def test_augmented_assignment_reads_then_writes() -> None:
    statement = scan("total += step")
    assert set(statement.reads) == {"total", "step"}
    assert set(statement.writes) == {"total"}


def test_attribute_assignment_mutates_without_rebinding() -> None:
    statement = scan("obj.attr.sub = v")
    assert set(statement.reads) == {"v", "obj"}
    assert statement.writes == {}
    assert statement.mutates == {"obj": 1}


def test_subscript_assignment_and_augmented_subscript_mutate() -> None:
    assert scan("df['col'] = values").mutates == {"df": 1}
    statement = scan("counts[k] += 1")
    assert set(statement.reads) == {"counts", "k"}
    assert statement.writes == {}
    assert statement.mutates == {"counts": 1}


def test_a_method_call_reads_and_only_a_changing_method_mutates() -> None:
    statement = scan("n = items.count(3)")
    assert statement.reads == {"items": 1}
    assert statement.mutates == {}
    for base, source in (
        ("items", "items.append(3)"),
        ("vec", "X = vec.fit_transform(texts)"),
        ("search", "search.best_estimator_.partial_fit(X, y)"),
        ("model", "model.named_steps['clf'].fit(X, y)"),
        ("df", "df.fillna(0, inplace=True)"),
    ):
        statement = scan(source)
        assert statement.mutates == {base: 1}, source
        assert base in statement.reads, source


def test_annotation_without_value_binds_nothing() -> None:
    assert scan("x: int").writes == {}
    assert scan("x: int = 3").writes == {"x": 1}


def test_except_handler_name_is_written() -> None:
    statement = scan("try:\n    pass\nexcept ValueError as err:\n    log(err)")
    assert statement.reads == {"ValueError": 3, "log": 4}
    assert "err" in statement.writes


def test_match_capture_patterns_are_written() -> None:
    statement = scan(
        "match point:\n"
        "    case [a, *rest]:\n        pass\n"
        "    case {'k': v, **extra}:\n        pass"
    )
    assert set(statement.reads) == {"point"}
    assert set(statement.writes) == {"a", "rest", "v", "extra"}


def test_import_alias_is_the_bound_name() -> None:
    statement = scan("import numpy as np")
    assert statement.writes == {"np": 1}
    (imported,) = statement.imports
    assert (imported.name, imported.statement, imported.module) == (
        "np",
        "import numpy as np",
        "numpy",
    )


def test_dotted_import_binds_the_top_level_package() -> None:
    (imported,) = scan("import os.path").imports
    assert (imported.name, imported.module) == ("os", "os")


def test_from_import_alias_records_the_distribution_module() -> None:
    (imported,) = scan("from sklearn.linear_model import LogisticRegression as LR").imports
    assert imported.name == "LR"
    assert imported.module == "sklearn"
    assert imported.statement == "from sklearn.linear_model import LogisticRegression as LR"


def test_star_import_is_flagged_and_binds_nothing() -> None:
    statement = scan("from math import *")
    assert statement.writes == {}
    (imported,) = statement.imports
    assert imported.star
    assert imported.statement == "from math import *"
