//! The STS3215 control table (Feetech's memory table, as LeRobot's `tables.py` lists it) and
//! the value encodings: little-endian, with sign-magnitude registers (Homing_Offset: bit 11 is
//! the sign; the velocities: bit 15).

use serde::Serialize;

/// One register of the control table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Register {
    /// LeRobot's name for it.
    pub name: &'static str,
    /// Address.
    pub address: u8,
    /// Bytes (1 or 2).
    pub size: u8,
    /// Sign-magnitude: the sign bit's index.
    pub sign_bit: Option<u8>,
    /// In EEPROM (kept across power cycles; written only with Lock = 0).
    pub eeprom: bool,
}

/// Why a value could not be encoded or decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegisterError {
    /// The value does not fit the register.
    #[error("{value} does not fit register {name} ({size} byte(s){})", sign_bit.map(|b| format!(", sign bit {b}")).unwrap_or_default())]
    OutOfRange {
        /// Register.
        name: &'static str,
        /// Value.
        value: i32,
        /// Bytes.
        size: u8,
        /// Sign bit.
        sign_bit: Option<u8>,
    },
    /// Fewer bytes than the register holds.
    #[error("register {name} needs {size} byte(s), got {got}")]
    Short {
        /// Register.
        name: &'static str,
        /// Bytes needed.
        size: u8,
        /// Bytes given.
        got: usize,
    },
}

impl Register {
    const fn new(name: &'static str, address: u8, size: u8) -> Self {
        Self {
            name,
            address,
            size,
            sign_bit: None,
            eeprom: address < 40,
        }
    }

    const fn signed(mut self, bit: u8) -> Self {
        self.sign_bit = Some(bit);
        self
    }

    /// The register's bytes for `value`.
    pub fn encode(&self, value: i32) -> Result<Vec<u8>, RegisterError> {
        let err = || RegisterError::OutOfRange {
            name: self.name,
            value,
            size: self.size,
            sign_bit: self.sign_bit,
        };
        let raw: u32 = match self.sign_bit {
            Some(bit) => {
                let mag = value.unsigned_abs();
                if mag >= 1 << bit {
                    return Err(err());
                }
                if value < 0 {
                    mag | (1 << bit)
                } else {
                    mag
                }
            }
            None => u32::try_from(value).map_err(|_| err())?,
        };
        if raw >> (8 * u32::from(self.size)) != 0 {
            return Err(err());
        }
        Ok((0..self.size).map(|i| (raw >> (8 * i)) as u8).collect())
    }

    /// The value in `bytes` (the register's first bytes).
    pub fn decode(&self, bytes: &[u8]) -> Result<i32, RegisterError> {
        if bytes.len() < usize::from(self.size) {
            return Err(RegisterError::Short {
                name: self.name,
                size: self.size,
                got: bytes.len(),
            });
        }
        let raw = bytes[..usize::from(self.size)]
            .iter()
            .rev()
            .fold(0u32, |a, b| (a << 8) | u32::from(*b));
        Ok(match self.sign_bit {
            Some(bit) => {
                let mag = (raw & ((1 << bit) - 1)) as i32;
                if raw & (1 << bit) != 0 {
                    -mag
                } else {
                    mag
                }
            }
            None => raw as i32,
        })
    }
}

/// Steps per turn of the STS3215's magnetic encoder.
pub const STS3215_RESOLUTION: i32 = 4096;
/// The STS3215's model number (register 3).
pub const STS3215_MODEL: i32 = 777;

/// Firmware major version.
pub const FIRMWARE_MAJOR: Register = Register::new("Firmware_Major_Version", 0, 1);
/// Firmware minor version.
pub const FIRMWARE_MINOR: Register = Register::new("Firmware_Minor_Version", 1, 1);
/// Model number (777 for the STS3215).
pub const MODEL_NUMBER: Register = Register::new("Model_Number", 3, 2);
/// Servo ID.
pub const ID: Register = Register::new("ID", 5, 1);
/// Baud rate index (0 = 1,000,000).
pub const BAUD_RATE: Register = Register::new("Baud_Rate", 6, 1);
/// Return delay, 2 µs units.
pub const RETURN_DELAY_TIME: Register = Register::new("Return_Delay_Time", 7, 1);
/// Which instructions get a status reply.
pub const RESPONSE_STATUS_LEVEL: Register = Register::new("Response_Status_Level", 8, 1);
/// Lowest goal position, steps.
pub const MIN_POSITION_LIMIT: Register = Register::new("Min_Position_Limit", 9, 2);
/// Highest goal position, steps.
pub const MAX_POSITION_LIMIT: Register = Register::new("Max_Position_Limit", 11, 2);
/// Temperature limit, °C.
pub const MAX_TEMPERATURE_LIMIT: Register = Register::new("Max_Temperature_Limit", 13, 1);
/// Voltage limit, 0.1 V.
pub const MAX_VOLTAGE_LIMIT: Register = Register::new("Max_Voltage_Limit", 14, 1);
/// Voltage floor, 0.1 V.
pub const MIN_VOLTAGE_LIMIT: Register = Register::new("Min_Voltage_Limit", 15, 1);
/// Torque limit, 0.1 %.
pub const MAX_TORQUE_LIMIT: Register = Register::new("Max_Torque_Limit", 16, 2);
/// Phase (direction bits).
pub const PHASE: Register = Register::new("Phase", 18, 1);
/// Which faults unload the servo.
pub const UNLOADING_CONDITION: Register = Register::new("Unloading_Condition", 19, 1);
/// Which faults light the LED.
pub const LED_ALARM_CONDITION: Register = Register::new("LED_Alarm_Condition", 20, 1);
/// Position loop P gain.
pub const P_COEFFICIENT: Register = Register::new("P_Coefficient", 21, 1);
/// Position loop D gain.
pub const D_COEFFICIENT: Register = Register::new("D_Coefficient", 22, 1);
/// Position loop I gain.
pub const I_COEFFICIENT: Register = Register::new("I_Coefficient", 23, 1);
/// Minimum startup force.
pub const MINIMUM_STARTUP_FORCE: Register = Register::new("Minimum_Startup_Force", 24, 2);
/// Protection current.
pub const PROTECTION_CURRENT: Register = Register::new("Protection_Current", 28, 2);
/// Homing offset, steps: Present_Position = actual − offset. Sign-magnitude, bit 11.
pub const HOMING_OFFSET: Register = Register::new("Homing_Offset", 31, 2).signed(11);
/// Operating mode (0 = position).
pub const OPERATING_MODE: Register = Register::new("Operating_Mode", 33, 1);
/// Overload torque, %.
pub const OVERLOAD_TORQUE: Register = Register::new("Overload_Torque", 36, 1);
/// Torque on (1) or off (0).
pub const TORQUE_ENABLE: Register = Register::new("Torque_Enable", 40, 1);
/// Acceleration, 100 steps/s² units (0 = the servo's maximum).
pub const ACCELERATION: Register = Register::new("Acceleration", 41, 1);
/// Goal position, steps.
pub const GOAL_POSITION: Register = Register::new("Goal_Position", 42, 2);
/// Goal time, ms.
pub const GOAL_TIME: Register = Register::new("Goal_Time", 44, 2);
/// Goal velocity, steps/s (0 = the servo's maximum). Sign-magnitude, bit 15.
pub const GOAL_VELOCITY: Register = Register::new("Goal_Velocity", 46, 2).signed(15);
/// Torque limit, 0.1 %.
pub const TORQUE_LIMIT: Register = Register::new("Torque_Limit", 48, 2);
/// EEPROM lock (1 = locked).
pub const LOCK: Register = Register::new("Lock", 55, 1);
/// Present position, steps.
pub const PRESENT_POSITION: Register = Register::new("Present_Position", 56, 2);
/// Present velocity, steps/s. Sign-magnitude, bit 15.
pub const PRESENT_VELOCITY: Register = Register::new("Present_Velocity", 58, 2).signed(15);
/// Present load, 0.1 % (bit 10 is the direction).
pub const PRESENT_LOAD: Register = Register::new("Present_Load", 60, 2).signed(10);
/// Present voltage, 0.1 V.
pub const PRESENT_VOLTAGE: Register = Register::new("Present_Voltage", 62, 1);
/// Present temperature, °C.
pub const PRESENT_TEMPERATURE: Register = Register::new("Present_Temperature", 63, 1);
/// Status bits (the same bits as the status packet's error byte).
pub const STATUS: Register = Register::new("Status", 65, 1);
/// 1 while moving.
pub const MOVING: Register = Register::new("Moving", 66, 1);
/// Present current, 6.5 mA units.
pub const PRESENT_CURRENT: Register = Register::new("Present_Current", 69, 2);

/// Every register above, by address.
pub const STS3215: &[Register] = &[
    FIRMWARE_MAJOR,
    FIRMWARE_MINOR,
    MODEL_NUMBER,
    ID,
    BAUD_RATE,
    RETURN_DELAY_TIME,
    RESPONSE_STATUS_LEVEL,
    MIN_POSITION_LIMIT,
    MAX_POSITION_LIMIT,
    MAX_TEMPERATURE_LIMIT,
    MAX_VOLTAGE_LIMIT,
    MIN_VOLTAGE_LIMIT,
    MAX_TORQUE_LIMIT,
    PHASE,
    UNLOADING_CONDITION,
    LED_ALARM_CONDITION,
    P_COEFFICIENT,
    D_COEFFICIENT,
    I_COEFFICIENT,
    MINIMUM_STARTUP_FORCE,
    PROTECTION_CURRENT,
    HOMING_OFFSET,
    OPERATING_MODE,
    OVERLOAD_TORQUE,
    TORQUE_ENABLE,
    ACCELERATION,
    GOAL_POSITION,
    GOAL_TIME,
    GOAL_VELOCITY,
    TORQUE_LIMIT,
    LOCK,
    PRESENT_POSITION,
    PRESENT_VELOCITY,
    PRESENT_LOAD,
    PRESENT_VOLTAGE,
    PRESENT_TEMPERATURE,
    STATUS,
    MOVING,
    PRESENT_CURRENT,
];

/// The register called `name`.
pub fn by_name(name: &str) -> Option<Register> {
    STS3215.iter().copied().find(|r| r.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn homing_offset_is_sign_magnitude_on_bit_11() {
        assert_eq!(HOMING_OFFSET.encode(-5).ok(), Some(vec![0x05, 0x08]));
        assert_eq!(HOMING_OFFSET.encode(2047).ok(), Some(vec![0xFF, 0x07]));
        assert!(HOMING_OFFSET.encode(2048).is_err());
        assert_eq!(HOMING_OFFSET.decode(&[0x05, 0x08]).ok(), Some(-5));
        assert_eq!(GOAL_VELOCITY.decode(&[0x10, 0x80]).ok(), Some(-16));
        assert_eq!(GOAL_POSITION.encode(4095).ok(), Some(vec![0xFF, 0x0F]));
        assert!(GOAL_POSITION.encode(-1).is_err());
        assert!(TORQUE_ENABLE.encode(256).is_err());
        assert!(PRESENT_POSITION.decode(&[1]).is_err());
    }

    #[test]
    fn the_table_is_sorted_and_does_not_overlap() {
        for w in STS3215.windows(2) {
            assert!(
                w[0].address + w[0].size <= w[1].address,
                "{} overlaps {}",
                w[0].name,
                w[1].name
            );
        }
        assert_eq!(by_name("Lock").map(|r| r.address), Some(55));
        assert_eq!(TORQUE_ENABLE.address, 40);
        const { assert!(!TORQUE_ENABLE.eeprom && HOMING_OFFSET.eeprom) };
    }

    proptest::proptest! {
        #[test]
        fn values_round_trip(v in -2047i32..=2047, u in 0i32..=65535) {
            proptest::prop_assert_eq!(HOMING_OFFSET.decode(&HOMING_OFFSET.encode(v).unwrap_or_default()).ok(), Some(v));
            proptest::prop_assert_eq!(GOAL_POSITION.decode(&GOAL_POSITION.encode(u).unwrap_or_default()).ok(), Some(u));
        }
    }
}
