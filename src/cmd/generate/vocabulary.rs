//! The kinds of text the original frames hold (lorem-ipsum keys, English and
//! Cyrillic strings with escapes) and the weights of each kind of member.

use super::MAX_OVERSHOOT;

/// Key names: the words of the lorem-ipsum paragraph, with its repetitions
/// (so `in`, `dolor`, `ut`, `dolore` are the most frequent, as in the
/// original). The original never uses `id`, nor do we.
pub(super) const LOREM: &str =
    "Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod \
    tempor incididunt ut labore et dolore magna aliqua. Ut enim ad minim veniam, quis nostrud \
    exercitation ullamco laboris nisi ut aliquip ex ea commodo consequat. Duis aute irure dolor \
    in reprehenderit in voluptate velit esse cillum dolore eu fugiat nulla pariatur. Excepteur \
    sint occaecat cupidatat non proident, sunt in culpa qui officia deserunt mollit anim est \
    laborum.";

/// English strings, already JSON-encoded (quotes and escapes included).
pub(super) const ENGLISH: [&str; 13] = [
    r#""code/properties,/giving/the/best/of/both/the""#,
    r#""the\rRAII\ridiom)\rand\rscope\rstatements\rfor\rdeterministic""#,
    r#""specifying\"types,\"like\"dynamic\"languages\"do.\"On\"the""#,
    r#""code.\nD\nalso\nsupports\nscoped\nresource\nmanagement\n(aka""#,
    r#""read. Show example Built-in linear and associative arrays,""#,
    r#""memory\fmanagement\fmakes\ffor\fsafe,\fsimple,\fand\frobust""#,
    r#""transactional\tcode\tthat\tis\teasy\tto\twrite\tand""#,
    r#""example""#,
    r#""static\band\bthe\bdynamic\bworlds.\bShow\bexample\bAutomatic""#,
    r#""pleasant\\for\\tasks,\\both\\small\\and\\large.\\Show""#,
    r#""D allows writing large code fragments without redundantly""#,
    r#""other\\hand,\\static\\inference\\deduces\\types\\and\\other""#,
    r#""slices,\"and\"ranges\"make\"daily\"programming\"simple\"and""#,
];

/// Cyrillic strings (Pushkin, «Демон»), JSON-encoded.
pub(super) const CYRILLIC: [&str; 24] = [
    r#""В те дни, когда мне были новы""#,
    r#""Все впечатленья бытия -""#,
    r#""И взоры дев, и шум дубровы,""#,
    r#""И ночью пенье соловья,-""#,
    r#""Когда возвышенные чувства,""#,
    r#""Свобода, слава и любовь""#,
    r#""И вдохновенные искусства""#,
    r#""Так сильно волновали кровь,-""#,
    r#""Часы надежд и наслаждений""#,
    r#""Тоской внезапной осеня,""#,
    r#""Тогда какой-то злобный гений""#,
    r#""Стал тайно навещать меня.""#,
    r#""Печальны были наши встречи:""#,
    r#""Его улыбка, чудный взгляд,""#,
    r#""Его язвительные речи""#,
    r#""Вливали в душу хладный яд.""#,
    r#""Неистощимой клеветою""#,
    r#""Он провиденье искушал;""#,
    r#""Он звал прекрасное мечтою;""#,
    r#""Он вдохновенье презирал;""#,
    r#""Не верил он любви, свободе;""#,
    r#""На жизнь насмешливо глядел -""#,
    r#""И ничего во всей природе""#,
    r#""Благословить он не хотел.""#,
];

/// String draws: each English string has weight 56, each Cyrillic one 3
/// (13*56 = 728 of 800, so about 9% of strings are Cyrillic, as in the original).
pub(super) const STR_EN_WEIGHT: u64 = 56;
pub(super) const STR_CY_WEIGHT: u64 = 3;
pub(super) const STR_EN_TOTAL: u64 = STR_EN_WEIGHT * ENGLISH.len() as u64;
pub(super) const STR_TOTAL: u64 = STR_EN_TOTAL + STR_CY_WEIGHT * CYRILLIC.len() as u64;

/// Kinds of filler values, drawn per 1000 (shares of the original's values).
#[derive(Clone, Copy)]
pub(super) struct Weights {
    pub(super) string: u64,
    pub(super) empty_obj: u64,
    pub(super) empty_arr: u64,
    pub(super) int: u64,
    pub(super) float: u64,
    pub(super) boolean: u64,
    pub(super) obj: u64,
    pub(super) arr: u64,
}

impl Weights {
    pub(super) const fn simple(&self) -> u64 {
        self.string + self.empty_obj + self.empty_arr + self.int + self.float + self.boolean
    }
    pub(super) const fn total(&self) -> u64 {
        self.simple() + self.obj + self.arr
    }
}

/// Filler values (containers only inside the one big root container).
pub(super) const WEIGHTS: Weights = Weights {
    string: 620,
    empty_obj: 80,
    empty_arr: 66,
    int: 41,
    float: 43,
    boolean: 38,
    obj: 62,
    arr: 50,
};

/// Per 1000 frames, how many have one big nested root member (the original:
/// 989 of its last 1000 frames, 54% objects, 46% arrays).
pub(super) const BIG_PER_1000: u64 = 990;
pub(super) const BIG_OBJECT_PERCENT: u64 = 54;
/// Byte budget of the big member: `BIG_MIN + below(BIG_SPREAD)` (the
/// original: median 845 bytes, 90% within 430-1,065, at most about 1,150).
pub(super) const BIG_MIN: usize = 400;
pub(super) const BIG_SPREAD: u64 = 800;
/// Children drawn for a nested object / array (fewer when the budget runs out).
pub(super) const OBJ_CHILDREN: u64 = 20;
pub(super) const ARR_CHILDREN: u64 = 25;

/// Members of nested objects: 6.5% are `ts`, 6.5% are `uid`.
pub(super) const NESTED_TS_PER_1000: u64 = 65;
pub(super) const NESTED_UID_PER_1000: u64 = 65;

/// Percent of frames whose root `ts` is a JSON string of digits.
pub(super) const TS_STRING_PERCENT: u64 = 5;
/// Percent of frames with a filler member between `ts` and `uid`.
pub(super) const BETWEEN_PERCENT: u64 = 15;
/// Deepest non-empty container below the root: with empty `{}`/`[]` leaves
/// and arrays of `{"uid":..}` objects, values go 6 levels below the root
/// (the original: 7).
pub(super) const MAX_NESTING: u32 = 4;
/// Room kept free after a big member's budget: it may exceed the budget by
/// one value and a closing bracket per level.
pub(super) const BIG_SLACK: usize = 100 * (MAX_NESTING as usize + 2) + MAX_OVERSHOOT;
