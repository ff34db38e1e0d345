from pathlib import Path

import pytest

from cases.taxonomy import Category, Taxonomy, TaxonomyError, load_codes
from db_fixtures import CONFIG, taxonomy  # noqa: F401  (fixture)

HEADER = "major_code,major_name,minor_code,minor_name\n"
MAPPING = """\
event_types:
  street_vending: {category: 05/01, labels: {goods: 05/04}}
  illegal_construction: {category: 01/01}
  dust: {category: 03/02}
"""
CODES = HEADER + "01,市容环境,01,私搭乱建\n03,施工管理,02,工地扬尘\n05,街面秩序,01,无照经营游商\n05,街面秩序,04,店外经营\n"


def write(tmp_path: Path, codes: str = CODES, mapping: str = MAPPING, bom: bool = False) -> tuple[Path, Path]:
    codes_path, mapping_path = tmp_path / "codes.csv", tmp_path / "categories.yaml"
    codes_path.write_text(("\ufeff" if bom else "") + codes, encoding="utf-8")
    mapping_path.write_text(mapping, encoding="utf-8")
    return codes_path, mapping_path


def test_baseline_categories(taxonomy):
    assert taxonomy.category_for("street_vending") == Category("05", "街面秩序", "01", "无照经营游商")
    assert taxonomy.category_for("street_vending", "goods") == Category("05", "街面秩序", "04", "店外经营")
    assert taxonomy.category_for("illegal_construction") == Category("01", "市容环境", "01", "私搭乱建")
    assert taxonomy.category_for("dust") == Category("03", "施工管理", "02", "工地扬尘")
    assert taxonomy.category_for("dust", "material_pile") == Category("03", "施工管理", "03", "施工废弃料")


def test_unmapped_label_falls_back_to_the_type_default(taxonomy):
    assert taxonomy.category_for("street_vending", "tricycle").code == "05/01"
    assert taxonomy.category_for("dust", "").code == "03/02"


def test_categories_lists_every_code_in_order_with_leading_zeros(taxonomy):
    rows = (CONFIG / "event_codes.csv").read_text(encoding="utf-8").strip().splitlines()[1:]
    cats = taxonomy.categories()
    assert len(cats) == len(rows)
    assert cats[0] == Category("01", "市容环境", "01", "私搭乱建")
    assert [c.code for c in cats] == sorted(c.code for c in cats)
    assert all(len(c.major) == 2 and c.major.startswith("0") for c in cats)


def test_unknown_event_type_is_an_error(taxonomy):
    with pytest.raises(TaxonomyError, match="littering"):
        taxonomy.category_for("littering")


def test_describe_is_bilingual_and_names_source_and_zone(taxonomy):
    text = taxonomy.describe("street_vending", "fixed", "cam-012", "north_gate")
    assert "视频监控 cam-012" in text and "占道经营" in text
    assert "street vending" in text and "fixed camera cam-012" in text and "north_gate" in text
    assert "zone" not in taxonomy.describe("dust", "drone", "uav-1")


def test_three_digit_minor_codes_and_excel_bom(tmp_path):
    codes = CODES + "05,街面秩序,101,占道洗车\n"
    mapping = MAPPING.replace("goods: 05/04", "goods: 05/04, carwash: 05/101")
    t = Taxonomy.load(*write(tmp_path, codes, mapping, bom=True))
    assert t.category_for("street_vending", "carwash") == Category("05", "街面秩序", "101", "占道洗车")


def test_mapping_to_a_code_absent_from_the_codes_file_fails_at_load(tmp_path):
    mapping = MAPPING.replace("category: 03/02", "category: 03/07")
    with pytest.raises(TaxonomyError, match=r"categories\.yaml: event type 'dust': code 03/07 is not in the codes file"):
        Taxonomy.load(*write(tmp_path, mapping=mapping))


def test_label_mapping_is_checked_too(tmp_path):
    mapping = MAPPING.replace("goods: 05/04", "goods: 05/44")
    with pytest.raises(TaxonomyError, match="label 'goods': code 05/44"):
        Taxonomy.load(*write(tmp_path, mapping=mapping))


def test_codes_written_as_yaml_numbers_are_refused(tmp_path):
    # YAML reads `0101` as the octal number 65: the leading zero, and the code, are lost.
    mapping = MAPPING.replace("category: 01/01", "category: 0101")
    with pytest.raises(TaxonomyError, match="'illegal_construction': expected a code pair like 05/01, got the int 65"):
        Taxonomy.load(*write(tmp_path, mapping=mapping))


@pytest.mark.parametrize(
    "mapping, message",
    [
        (MAPPING + "  littering: {category: 01/01}\n", "event type 'littering' is unknown"),
        ("event_types:\n  street_vending: {category: 05/01}\n", "no category for event type\\(s\\) illegal_construction, dust"),
        (MAPPING.replace("{category: 01/01}", "{code: 01/01}"), "needs a 'category"),
        (MAPPING.replace("category: 01/01", "category: 01-01"), "expected a code pair like 05/01, got '01-01'"),
        (MAPPING.replace("{category: 01/01}", "{category: 01/01, lables: {}}"), "unknown key\\(s\\) lables"),
        ("- street_vending\n", "expected a mapping with an 'event_types' section"),
        ("event_types: [\n", "not valid YAML"),
    ],
)
def test_bad_mapping_files(tmp_path, mapping, message):
    with pytest.raises(TaxonomyError, match=message):
        Taxonomy.load(*write(tmp_path, mapping=mapping))


@pytest.mark.parametrize(
    "codes, message",
    [
        ("major,major_name,minor,minor_name\n01,a,01,b\n", "missing column\\(s\\) major_code, minor_code"),
        (HEADER + "1,市容环境,01,私搭乱建\n", ":2: major_code '1' is not 2-3 digits"),
        (HEADER + "01,市容环境,01,私搭乱建\n01,市容环境,1a,x\n", ":3: minor_code '1a' is not 2-3 digits"),
        (HEADER + "01,市容环境,01,私搭乱建\n01,市容环境,01,又一个\n", ":3: code 01/01 appears twice"),
        (HEADER + "01,市容环境,01,私搭乱建\n01,市容,02,暴露垃圾\n", ":3: major 01 is named '市容' here but '市容环境' before"),
        (HEADER + "01,市容环境,01,\n", ":2: major_name and minor_name must not be empty"),
        (HEADER, "no codes"),
    ],
)
def test_bad_codes_files(tmp_path, codes, message):
    path = write(tmp_path, codes=codes)[0]
    with pytest.raises(TaxonomyError, match=message):
        load_codes(path)


def test_missing_files_are_named(tmp_path):
    with pytest.raises(TaxonomyError, match="codes file not found"):
        Taxonomy.load(tmp_path / "nope.csv", tmp_path / "categories.yaml")
    codes, _ = write(tmp_path)
    with pytest.raises(TaxonomyError, match="category mapping not found"):
        Taxonomy.load(codes, tmp_path / "nope.yaml")


def test_lookup_of_a_code_pair(taxonomy):
    assert taxonomy.category("05", "04").minor_name == "店外经营"
    with pytest.raises(TaxonomyError, match="no category 5/4"):
        taxonomy.category("5", "4")
