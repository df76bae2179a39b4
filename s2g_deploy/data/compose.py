"""Random but musical songs as General-MIDI parts: what ``s2g data render`` plays through FluidSynth.

A song is a pure function of its random generator: key and mode, tempo, metre, a form of sections
(intro, verse, chorus, bridge, outro) each with its own chord progression and its own set of playing
parts, and four stems' worth of parts:

- vocals: a lead line on a General-MIDI voice patch (choir aahs, voice oohs, synth voice, voice lead)
  in a singer's range, phrased with rests, legato overlaps, scoops and vibrato as pitch bends; in some
  choruses a second voice sings a diatonic third or sixth along;
- bass: root, fifth, octave and walking patterns on one of the eight GM basses;
- drums: a groove for the metre on the GM percussion channel, fills into sections, crashes on downbeats;
- other: 2-4 instruments from the piano, organ, guitar, string, brass, reed and pad families, comping,
  arpeggiating, strumming, holding pads or playing counter-lines whose range overlaps the vocal's.

Times are seconds, pitches MIDI note numbers, velocities 1-127, pitch bends -8192..8191 for a range of
two semitones (the GM default).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

STEMS = ("vocals", "bass", "drums", "other")

VOICE_PROGRAMS = {52: "choir aahs", 53: "voice oohs", 54: "synth voice", 85: "lead 6 (voice)"}
BASS_PROGRAMS = tuple(range(32, 40))
OTHER_FAMILIES = {
    "piano": tuple(range(0, 8)),
    "organ": tuple(range(16, 21)),
    "guitar": (24, 25, 26, 27, 28, 29, 30),
    "strings": (40, 41, 42, 48, 49, 50, 51),
    "brass": (56, 57, 58, 60, 61, 62),
    "reed": (64, 65, 66, 67, 68, 71),
    "pad": tuple(range(88, 96)),
}
DRUM_KITS = (0, 8, 16, 24, 25, 32, 40)  # GM2 kits on bank 128: standard, room, power, electronic, 808, jazz, brush
MAJOR, MINOR = (0, 2, 4, 5, 7, 9, 11), (0, 2, 3, 5, 7, 8, 10)
# Progressions as scale degrees (0 = tonic), one chord per bar; the usual pop, rock and ballad loops.
PROGRESSIONS = {
    "major": ((0, 4, 5, 3), (5, 3, 0, 4), (0, 5, 3, 4), (1, 4, 0, 0), (0, 3, 4, 3), (0, 2, 3, 4), (3, 4, 2, 5)),
    "minor": ((0, 5, 2, 6), (0, 3, 4, 0), (0, 6, 5, 4), (0, 5, 6, 4), (0, 3, 6, 2), (5, 6, 0, 0)),
}
FORMS = (
    ("intro", "verse", "chorus", "verse", "chorus", "bridge", "chorus", "outro"),
    ("verse", "verse", "chorus", "verse", "chorus", "chorus"),
    ("intro", "verse", "pre", "chorus", "verse", "pre", "chorus", "bridge", "chorus"),
    ("chorus", "verse", "chorus", "bridge", "verse", "chorus", "outro"),
)
METRES = {"4/4": (4, 4), "3/4": (3, 4), "6/8": (2, 6)}  # (beats per bar, subdivisions per bar)


@dataclass(frozen=True)
class Note:
    start: float
    end: float
    pitch: int
    velocity: int


@dataclass
class Part:
    """One instrument on one MIDI channel; its stem is where its audio goes."""

    stem: str
    role: str
    program: int
    name: str
    drum: bool = False
    notes: list[Note] = field(default_factory=list)
    bends: list[tuple[float, int]] = field(default_factory=list)  # (time, value)
    reverb: int = 40  # CC91 send, 0-127
    chorus: int = 0  # CC93 send

    def describe(self) -> dict:
        return {"stem": self.stem, "role": self.role, "program": self.program, "name": self.name, "drum": self.drum}


@dataclass(frozen=True)
class Section:
    name: str
    start: float
    end: float
    chords: tuple[int, ...]  # root scale degree per bar
    playing: frozenset[str]  # roles of the parts that play


@dataclass
class Song:
    key: int  # tonic pitch class, 0 = C
    mode: str
    tempo_bpm: float
    metre: str
    sections: list[Section]
    parts: list[Part]

    @property
    def scale(self) -> tuple[int, ...]:
        return MAJOR if self.mode == "major" else MINOR

    def describe(self) -> dict:
        names = ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")
        return {
            "key": f"{names[self.key]} {self.mode}",
            "tempo_bpm": round(self.tempo_bpm, 2),
            "metre": self.metre,
            "sections": [
                {"name": s.name, "start_s": round(s.start, 3), "end_s": round(s.end, 3), "playing": sorted(s.playing)}
                for s in self.sections
            ],
            "parts": [p.describe() for p in self.parts],
        }


def compose(rng: np.random.Generator, seconds: float) -> Song:
    """A song of at least ``seconds`` seconds in which every stem plays somewhere."""
    mode = "major" if rng.random() < 0.6 else "minor"
    metre = str(rng.choice(list(METRES), p=[0.7, 0.15, 0.15]))
    beats, subdivisions = METRES[metre]
    tempo = float(rng.uniform(72, 150)) if metre != "6/8" else float(rng.uniform(50, 80))
    bar = beats * 60.0 / tempo
    parts = _choose_parts(rng)
    sections = _arrange(rng, seconds, bar, mode, [p.role for p in parts])
    song = Song(int(rng.integers(12)), mode, tempo, metre, sections, parts)
    for part in parts:
        writer = {"lead": _vocal, "harmony": _harmony, "bass": _bass, "drums": _drums}.get(part.role, _other)
        writer(rng, song, part, bar, subdivisions)
    return song


def _choose_parts(rng: np.random.Generator) -> list[Part]:
    voice = int(rng.choice(list(VOICE_PROGRAMS)))
    parts = [Part("vocals", "lead", voice, VOICE_PROGRAMS[voice], reverb=int(rng.integers(30, 90)))]
    second = int(rng.choice(list(VOICE_PROGRAMS)))
    parts.append(Part("vocals", "harmony", second, VOICE_PROGRAMS[second], reverb=int(rng.integers(30, 90))))
    bass = int(rng.choice(BASS_PROGRAMS))
    parts.append(Part("bass", "bass", bass, f"bass GM {bass}", reverb=int(rng.integers(0, 30))))
    kit = int(rng.choice(DRUM_KITS))
    parts.append(Part("drums", "drums", kit, f"kit {kit}", drum=True, reverb=int(rng.integers(10, 60))))
    families = rng.choice(list(OTHER_FAMILIES), size=int(rng.integers(2, 5)), replace=False)
    roles = ["chords", "counter", *list(rng.choice(["chords", "arpeggio", "pad", "counter"], size=2))]
    for family, role in zip(families, roles, strict=False):
        if family == "pad":
            role = "pad"
        elif role == "pad" and family in ("piano", "guitar"):  # plucked and struck notes do not hold
            role = "arpeggio"
        elif family == "guitar" and role == "chords":
            role = "strum"
        program = int(rng.choice(OTHER_FAMILIES[family]))
        parts.append(
            Part("other", str(role), program, f"{family} GM {program}", reverb=int(rng.integers(20, 90)),
                 chorus=int(rng.integers(0, 50)))
        )  # fmt: skip
    return parts


def _arrange(rng, seconds: float, bar: float, mode: str, roles: list[str]) -> list[Section]:
    """Sections of 2-4 bars from a song form, until ``seconds`` are covered; every role plays somewhere."""
    form = FORMS[rng.integers(len(FORMS))]
    offset = int(rng.integers(len(form)))  # start anywhere in the form: an excerpt, like a training crop
    progressions = {}
    sections, t, i = [], 0.0, 0
    while t < seconds:
        name = form[(offset + i) % len(form)]
        if name not in progressions:
            options = PROGRESSIONS[mode]
            progressions[name] = options[rng.integers(len(options))]
        bars = 2 if name in ("intro", "outro", "pre") else 4
        chords = tuple(progressions[name][b % 4] for b in range(bars))
        sections.append(Section(name, t, t + bars * bar, chords, _playing(rng, name, roles)))
        t += bars * bar
        i += 1
    # a short excerpt may have drawn a section where a stem rests throughout: bring it in at the first
    stems_of = {"lead": "vocals", "harmony": "vocals", "bass": "bass", "drums": "drums"}
    heard = {stems_of.get(r, "other") for s in sections for r in s.playing}
    missing = {r for r in roles if stems_of.get(r, "other") not in heard and r != "harmony"}
    if missing:
        first = sections[0]
        sections[0] = Section(first.name, first.start, first.end, first.chords, first.playing | missing)
    return sections


def _playing(rng, name: str, roles: list[str]) -> frozenset[str]:
    chance = {"intro": 0.5, "verse": 0.6, "pre": 0.7, "chorus": 0.95, "bridge": 0.6, "outro": 0.5}[name]
    playing = {r for r in roles if r not in ("lead", "harmony", "bass", "drums") and rng.random() < chance}
    if name in ("verse", "pre", "chorus", "bridge") or rng.random() < 0.2:
        playing.add("lead")
    if name == "chorus" and rng.random() < 0.5:
        playing.add("harmony")
    if name != "intro" or rng.random() < 0.5:
        playing.add("bass")
    if name not in ("intro", "bridge") or rng.random() < 0.4:
        playing.add("drums")
    if not playing & set(roles[4:]):
        playing.add(roles[4])
    return frozenset(playing)


# --- pitch helpers ------------------------------------------------------------------------------------


def _degree_pitch(song: Song, degree: int, octave: int) -> int:
    """MIDI pitch of scale ``degree`` (may be negative or beyond 6) above C of ``octave`` (C4 = 60)."""
    scale = song.scale
    return 12 * (octave + 1) + song.key + scale[degree % 7] + 12 * (degree // 7)


def _chord_tones(song: Song, root: int) -> tuple[int, ...]:
    """Pitch classes (relative to C) of the triad on scale degree ``root``; minor mode raises V's third."""
    pcs = [(song.key + song.scale[(root + k) % 7]) % 12 for k in (0, 2, 4)]
    if song.mode == "minor" and root == 4:
        pcs[1] = (pcs[1] + 1) % 12  # harmonic minor: the dominant is major
    return tuple(pcs)


def _nearest(pcs, target: float, low: int, high: int) -> int:
    candidates = [p for p in range(low, high + 1) if p % 12 in pcs]
    return min(candidates, key=lambda p: abs(p - target))


def _in_scale(song: Song, pitch: int) -> bool:
    return (pitch - song.key) % 12 in song.scale


def _chord_at(song: Song, t: float, bar: float) -> tuple[Section, int]:
    for s in song.sections:
        if s.start <= t < s.end:
            return s, s.chords[min(int((t - s.start) / bar), len(s.chords) - 1)]
    last = song.sections[-1]
    return last, last.chords[-1]


def _jitter(rng, t: float, amount: float = 0.008) -> float:
    return max(0.0, t + float(rng.normal(0, amount)))


def _vel(rng, base: float, spread: float = 10) -> int:
    return int(np.clip(round(rng.normal(base, spread)), 20, 127))


# --- the parts --------------------------------------------------------------------------------------


def _vocal(rng, song: Song, part: Part, bar: float, subdivisions: int) -> None:
    """A sung line: phrases of 1-2 bars with rests, mostly stepwise, chord tones on the beats."""
    low = int(rng.choice([55, 60, 48]))  # alto/soprano-ish, mezzo, tenor-ish lowest note
    high = low + int(rng.integers(15, 20))
    step = bar / subdivisions / 2  # the shortest note: half a subdivision (eighths in 4/4)
    pitch = (low + high) / 2
    for section in song.sections:
        if "lead" not in section.playing:
            continue
        t = section.start + step * int(rng.integers(0, 3))
        while t < section.end - step:
            phrase_end = min(section.end, t + bar * float(rng.choice([1.0, 1.5, 2.0])))
            notes: list[Note] = []
            while t < phrase_end - step:
                length = step * float(rng.choice([1, 2, 2, 3, 4, 4, 6, 8]))
                _, root = _chord_at(song, t, bar)
                on_beat = abs(((t - section.start) / (2 * step)) - round((t - section.start) / (2 * step))) < 1e-6
                if on_beat or rng.random() < 0.3:
                    pitch = _nearest(_chord_tones(song, root), pitch + rng.normal(0, 2), low, high)
                else:
                    move = int(rng.choice([-2, -1, -1, 1, 1, 2, 3, -3]))
                    cand = pitch + move
                    while not _in_scale(song, int(cand)):
                        cand += 1 if move > 0 else -1
                    pitch = int(np.clip(cand, low, high))
                end = min(t + length, phrase_end)
                notes.append(Note(_jitter(rng, t), end, int(pitch), _vel(rng, 90)))
                t = end
            _phrase_expression(rng, part, notes)
            t += step * float(rng.choice([1, 2, 3, 4, 6]))  # a breath


def _phrase_expression(rng, part: Part, notes: list[Note]) -> None:
    """Legato overlaps inside a phrase, scoops into some notes, vibrato on long ones (pitch bends)."""
    depth = float(rng.uniform(0.15, 0.5))  # vibrato depth, semitones
    rate = float(rng.uniform(4.8, 6.5))  # Hz
    for k, note in enumerate(notes):
        legato = k + 1 < len(notes) and notes[k + 1].pitch != note.pitch  # a repeated note is re-struck
        end = note.end + (float(rng.uniform(0.01, 0.04)) if legato else -0.02)
        part.notes.append(Note(note.start, max(note.start + 0.05, end), note.pitch, note.velocity))
        t = note.start
        if rng.random() < 0.35:  # scoop up into the note
            scoop = float(rng.uniform(0.3, 1.0))
            for s in np.arange(0.0, 0.08, 0.01):
                part.bends.append((t + s, int(-scoop * (1 - s / 0.08) * 4096)))
        part.bends.append((t + 0.08, 0))
        if note.end - note.start > 0.35:
            times = np.arange(note.start + 0.2, note.end, 0.01)
            onset = np.clip((times - note.start - 0.2) / 0.3, 0, 1)  # vibrato fades in
            values = depth * onset * np.sin(2 * np.pi * rate * (times - note.start)) * 4096
            part.bends.extend((float(a), int(v)) for a, v in zip(times, values, strict=True))
            part.bends.append((note.end, 0))


def _harmony(rng, song: Song, part: Part, bar: float, subdivisions: int) -> None:
    """A second voice a diatonic third or sixth from the lead, in the sections where it sings."""
    lead = next(p for p in song.parts if p.role == "lead")
    interval = int(rng.choice([2, -2, 5, -5]))  # scale steps: third above/below, sixth above/below
    for note in lead.notes:
        section, _ = _chord_at(song, note.start, bar)
        if "harmony" not in section.playing:
            continue
        pitch = note.pitch
        steps = 0
        while steps != interval:
            pitch += 1 if interval > 0 else -1
            if _in_scale(song, pitch):
                steps += 1 if interval > 0 else -1
        part.notes.append(Note(note.start + 0.01, note.end, pitch, max(20, note.velocity - 15)))
    part.bends.extend(lead.bends)  # the same scoops and vibrato, as a backing singer follows


def _bass(rng, song: Song, part: Part, bar: float, subdivisions: int) -> None:
    for section in song.sections:
        if "bass" not in section.playing:
            continue
        style = str(rng.choice(["whole", "halves", "eighths", "walk", "syncopated"]))
        for b, root in enumerate(section.chords):
            start = section.start + b * bar
            base = _degree_pitch(song, root, 1)
            base += 12 if base < 33 else 0
            grid = bar / subdivisions
            if style == "whole":
                hits = [(0, subdivisions, base)]
            elif style == "halves":
                half = subdivisions // 2
                hits = [(0, half, base), (half, subdivisions - half, base + 7)]
            elif style == "eighths":
                hits = [(k / 2, 0.5, base + (12 if k % 4 == 3 else 0)) for k in range(2 * subdivisions)]
            elif style == "walk":
                steps = [base + d for d in (0, 4 if _in_scale(song, base + 4) else 3, 7, 9)]
                hits = [(k, 1, steps[k % 4]) for k in range(subdivisions)]
            else:
                hits = [(0, 1.5, base), (1.5, 1, base), (3, 1, base + 7)] if subdivisions >= 4 else [(0, 2, base)]
            for pos, dur, pitch in hits:
                t = start + pos * grid
                part.notes.append(Note(_jitter(rng, t), t + dur * grid * 0.92, int(pitch), _vel(rng, 95, 12)))


KICK, SNARE, HAT, OPEN_HAT, RIDE, CRASH, TOMS, CLAP = 36, 38, 42, 46, 51, 49, (50, 47, 45, 43), 39


def _drums(rng, song: Song, part: Part, bar: float, subdivisions: int) -> None:
    for section in song.sections:
        if "drums" not in section.playing:
            continue
        groove = str(rng.choice(["rock", "half", "disco", "ride"]))
        grid = bar / (2 * subdivisions) if subdivisions != 6 else bar / 6
        cells = 2 * subdivisions if subdivisions != 6 else 6
        cymbal = RIDE if groove == "ride" else HAT
        for b in range(len(section.chords)):
            start = section.start + b * bar
            last = b == len(section.chords) - 1
            for c in range(cells):
                t = start + c * grid
                hits = []
                half = cells // 2
                if cells == 6:  # 6/8: kick on 1, snare on 4, eighths on the hat
                    hits += [(KICK, 100)] if c == 0 else [(SNARE, 95)] if c == 3 else []
                elif groove == "disco":
                    hits += [(KICK, 100)] if c % 2 == 0 else [(OPEN_HAT, 70)]
                    hits += [(SNARE, 95)] if c % 4 == 2 else []
                elif groove == "half":
                    hits += [(KICK, 100)] if c == 0 or (c == cells - 2 and rng.random() < 0.5) else []
                    hits += [(SNARE, 100)] if c == half else []
                else:
                    hits += [(KICK, 100)] if c % 4 == 0 or rng.random() < 0.08 else []
                    hits += [(SNARE, 100)] if c % 4 == 2 else []
                if last and c >= cells - cells // 4 and rng.random() < 0.7:  # a fill into the next section
                    hits = [(TOMS[(c - cells) % 4], 105)]
                elif groove != "disco" or c % 2 == 0:
                    hits.append((cymbal, 75 if c % 2 == 0 else 55))
                if b == 0 and c == 0 and section is not song.sections[0] and rng.random() < 0.8:
                    hits.append((CRASH, 105))
                for pitch, velocity in hits:
                    jt = _jitter(rng, t, 0.004)
                    part.notes.append(Note(jt, jt + 0.1, pitch, _vel(rng, velocity, 8)))


def _other(rng, song: Song, part: Part, bar: float, subdivisions: int) -> None:
    """Comping chords, strums, arpeggios, held pads or a counter-line, in a range overlapping the voice."""
    center = float(rng.uniform(57, 72))
    for section in song.sections:
        if part.role not in section.playing:
            continue
        for b, root in enumerate(section.chords):
            start = section.start + b * bar
            pcs = _chord_tones(song, root)
            voicing = sorted(_nearest({pc}, center + k * 4, 45, 84) for k, pc in enumerate(pcs))
            grid = bar / subdivisions
            if part.role == "pad":
                for p in voicing:
                    part.notes.append(Note(start, start + bar * 0.98, p, _vel(rng, 70, 6)))
            elif part.role in ("chords", "strum"):
                pattern = [0, 2] if subdivisions % 2 == 0 else [0]
                if rng.random() < 0.5:
                    pattern = list(range(subdivisions))
                for pos in pattern:
                    t = start + pos * grid
                    for k, p in enumerate([*voicing, voicing[0] + 12]):
                        offset = k * 0.012 if part.role == "strum" else 0.0
                        part.notes.append(Note(_jitter(rng, t + offset), t + grid * 1.8, p, _vel(rng, 75)))
            elif part.role == "arpeggio":
                tones = [*voicing, voicing[0] + 12]
                for k in range(2 * subdivisions):
                    t = start + k * grid / 2
                    part.notes.append(Note(_jitter(rng, t), t + grid * 0.9, tones[k % len(tones)], _vel(rng, 72)))
            else:  # counter-line: long notes moving between chord tones in the voice's range
                for k in range(0, subdivisions, 2):
                    t = start + k * grid
                    p = _nearest(pcs, center + rng.normal(0, 3), 52, 81)
                    part.notes.append(Note(_jitter(rng, t), t + 2 * grid * 0.95, p, _vel(rng, 80)))
